"""Running the suite's cases in several processes (``gankit conformance --jobs N``).

The cases are cut into groups that share the caches a process builds (a subject on one
backend: its traced losses, its trainer; a check across backends goes with the subject
on the last backend it compares). The calling process and ``jobs - 1`` worker
processes take groups, most expensive first, from one shared counter until none is left:
a process that finishes early takes the next group, so the work balances itself. Each
worker plans the same suite from the same selection (the plugin registry is read again
from the installed entry points), checks that its plan is the caller's case for case, and
sends each result back as it is made. A worker that dies, or plans differently, costs
nothing but time: every case without a result is run by the caller at the end.

Workers are started with ``spawn`` (the frameworks' thread pools do not survive a
``fork``); a worker imports the frameworks again, about 10 s of CPU on a small machine,
which is why one group per process is not worth it for a handful of cases.
"""

from __future__ import annotations

import multiprocessing as mp
import queue as queues
import time
from dataclasses import asdict
from typing import Callable

from gankit.conformance.core import CheckResult

#: Rough CPU seconds per case of each kind (measured on a 2-core machine), only to order
#: the groups, the longest first.
COST = {"architecture": 1.0, "training": 0.6, "regularizer": 0.1, "loss": 0.03}


def estimated_seconds(cases) -> float:
    """Rough CPU seconds of ``cases`` on a small machine (see :data:`COST`)."""
    return sum(COST.get(c.spec.kind, 0.1) for c in cases)


def groups(cases) -> list[list[int]]:
    """Case indices grouped by (subject, backend), an across-backends case with its
    subject's group on the last backend it compares; the most expensive group first."""
    by_key: dict[tuple, list[int]] = {}
    for i, case in enumerate(cases):
        backend = case.backends[-1].name if case.backends else ""
        by_key.setdefault((case.spec.kind, case.subject.label, backend), []).append(i)
    return sorted(by_key.values(), key=lambda g: -estimated_seconds([cases[i] for i in g]))


def _claim(counter) -> int:
    with counter.get_lock():
        g = counter.value
        counter.value += 1
    return g


def _worker(selection: dict, environ: dict, ids: list[str], plan: list[list[int]], counter, results) -> None:
    """A worker process: read the plugins as the caller did (``environ``: its plugin
    allow and deny lists), plan the suite, check the plan, run claimed groups, send results."""
    start = time.process_time()
    try:
        import os

        from gankit.conformance.suite import Suite
        from gankit.plugins import ALLOW_LIST_ENV, DENY_LIST_ENV, DISABLE_AUTOLOAD_ENV

        for var in (ALLOW_LIST_ENV, DENY_LIST_ENV, DISABLE_AUTOLOAD_ENV):
            if var in environ:
                os.environ[var] = environ[var]
            else:
                os.environ.pop(var, None)

        suite = Suite(**selection)
        cases = suite.cases()
        if [c.id for c in cases] != ids:
            results.put(("error", "its plan differs from the caller's"))
            return
        with suite.quiet_frameworks():
            while (g := _claim(counter)) < len(plan):
                for i in plan[g]:
                    results.put(("result", i, asdict(cases[i].run())))
    except BaseException as exc:  # reported; the caller runs what is left
        results.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        results.put(("done", time.process_time() - start))


def run_parallel(suite, cases, jobs: int,
                 on_result: Callable[[CheckResult], None] | None) -> tuple[list, float, list[str]]:
    """Run ``cases`` of ``suite`` in this process and ``jobs - 1`` workers. Returns the
    results in the cases' order, the workers' CPU seconds, and what went wrong in a
    worker (its cases were then run here)."""
    plan = groups(cases)
    jobs = max(1, min(jobs, len(plan)))
    ctx = mp.get_context("spawn")
    counter = ctx.Value("i", 0)
    inbox = ctx.Queue()
    ids = [c.id for c in cases]
    workers = [ctx.Process(target=_worker, args=(suite.selection(), suite.registry.environ, ids, plan, counter, inbox), daemon=True,
                           name=f"gankit-conformance-{k}") for k in range(1, jobs)]
    for w in workers:
        w.start()
    got: dict[int, CheckResult] = {}
    state = {"cpu": 0.0, "done": 0, "errors": []}

    def take(message) -> None:
        if message[0] == "result":
            result = CheckResult(**message[2])
            got[message[1]] = result
            if on_result is not None:
                on_result(result)
        elif message[0] == "error":
            state["errors"].append(message[1])
        else:
            state["cpu"] += message[1]
            state["done"] += 1

    def drain(block: bool) -> None:
        while True:
            try:
                take(inbox.get(block=block, timeout=0.5 if block else None))
            except queues.Empty:
                return

    def mine(i: int) -> None:
        result = cases[i].run()
        got[i] = result
        if on_result is not None:
            on_result(result)

    try:
        while (g := _claim(counter)) < len(plan):
            for i in plan[g]:
                mine(i)
                drain(block=False)
        # Wait for the groups the workers hold, not for the workers: one still starting
        # (importing the frameworks) when every case has its result is stopped.
        while len(got) < len(cases) and state["done"] < len(workers):
            drain(block=True)
            if not any(w.is_alive() for w in workers):
                drain(block=False)  # a worker killed without a word: its last results, if any
                break
        deadline = time.monotonic() + 1.0
        while state["done"] < len(workers) and time.monotonic() < deadline and any(w.is_alive() for w in workers):
            drain(block=True)  # their CPU time, sent as they finish
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
            w.join(timeout=5)
    for i in range(len(cases)):  # what a dead or disagreeing worker left
        if i not in got:
            mine(i)
    return [got[i] for i in range(len(cases))], state["cpu"], state["errors"]


__all__ = ["COST", "estimated_seconds", "groups", "run_parallel"]
