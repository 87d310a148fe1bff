"""`gankit conformance --jobs N`: the cases run in worker processes give the same report,
in the same order, as one process; a worker that dies or plans differently loses nothing."""

import json
import multiprocessing as mp
import queue

import pytest

from gankit.cli import main
from gankit.conformance import Suite
from gankit.conformance import parallel
from gankit.conformance.core import CheckResult

#: Two losses x two checks on torch: two groups, so a worker gets one of them.
SELECTION = dict(backends=["torch"], losses=["minimax", "hinge"], checks=["loss.reference", "loss.monotone"],
                 dtypes=["float32"])


def _outcomes(report):
    return [(r.kind, r.subject, r.check, r.backend, r.dtype, r.status, r.detail) for r in report.results]


@pytest.fixture(scope="module")
def serial():
    pytest.importorskip("torch")
    return Suite(**SELECTION).run()


def test_groups_keep_a_subject_on_a_backend_together_and_the_costliest_first():
    suite = Suite(**{**SELECTION, "losses": ["minimax"], "architectures": ["dcgan"], "checks": None,
                     "backends": ["torch"]})
    cases = suite.cases()
    plan = parallel.groups(cases)
    assert sorted(i for g in plan for i in g) == list(range(len(cases)))
    for g in plan:
        assert len({(cases[i].subject.label, cases[i].backends[-1].name) for i in g}) == 1
    assert cases[plan[0][0]].spec.kind == "architecture"  # about 1 s a case against 0.03


def test_two_jobs_give_the_same_report_in_the_same_order(serial):
    report = Suite(**SELECTION).run(jobs=2)
    assert report.header["jobs"] == 2 and "worker_errors" not in report.header
    assert _outcomes(report) == _outcomes(serial)
    assert report.counts() == serial.counts() and report.counts()["pass"] > 0


def test_a_spawned_worker_runs_the_groups_it_claims_as_this_process_would(serial):
    suite = Suite(**SELECTION)
    cases = suite.cases()
    plan = parallel.groups(cases)
    ctx = mp.get_context("spawn")
    inbox, counter = ctx.Queue(), ctx.Value("i", 0)
    worker = ctx.Process(target=parallel._worker,
                         args=(suite.selection(), suite.registry.environ, [c.id for c in cases], plan, counter, inbox))
    worker.start()
    messages = []
    while not messages or messages[-1][0] != "done":
        messages.append(inbox.get(timeout=120))
    worker.join(timeout=30)
    assert [m[0] for m in messages] == ["result"] * len(cases) + ["done"]  # it claimed every group
    got = {i: CheckResult(**r) for _, i, r in messages[:-1]}
    want = _outcomes(serial)
    assert [(r.kind, r.subject, r.check, r.backend, r.dtype, r.status, r.detail)
            for _, r in sorted(got.items())] == want
    assert counter.value > len(plan) and messages[-1][1] > 0  # its CPU seconds


def test_a_worker_sees_every_result_in_on_result(serial):
    seen = []
    report = Suite(**SELECTION).run(on_result=seen.append, jobs=2)
    assert sorted(map(repr, seen)) == sorted(map(repr, report.results))


def test_a_registry_built_from_plugin_objects_runs_in_this_process(mutant_registry):
    report = Suite(registry=mutant_registry, backends=["torch"], losses=["correct", "sum_reduced"],
                   checks=["loss.monotone"], dtypes=["float32"]).run(jobs=2)
    assert report.header["jobs"] == 1 and len(report.results) == 2


def test_a_worker_that_dies_at_start_costs_nothing_but_time(serial, tmp_path, monkeypatch):
    # Every new Python process started with this PYTHONPATH exits at once (the spawned
    # worker does; this process is already running).
    (tmp_path / "sitecustomize.py").write_text("import os\nos._exit(3)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    report = Suite(**SELECTION).run(jobs=2)
    assert _outcomes(report) == _outcomes(serial)


def test_a_worker_whose_plan_differs_runs_nothing_and_says_so():
    pytest.importorskip("torch")
    suite = Suite(**SELECTION)
    ids = [c.id for c in suite.cases()]
    plan = parallel.groups(suite.cases())
    inbox, counter = queue.Queue(), mp.get_context("spawn").Value("i", 0)
    parallel._worker(suite.selection(), suite.registry.environ, ids[::-1], plan, counter, inbox)
    messages = [inbox.get_nowait() for _ in range(inbox.qsize())]
    assert [m[0] for m in messages] == ["error", "done"] and "plan differs" in messages[0][1]
    assert counter.value == 0  # it claimed no group


def test_a_results_crossing_processes_is_a_check_result(serial):
    from dataclasses import asdict

    r = serial.results[0]
    assert CheckResult(**asdict(r)) == r


def test_cli_jobs_option(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "report.json"
    args = ["conformance", "-b", "torch", "--loss", "minimax", "--loss", "hinge", "--check", "loss.reference",
            "--dtype", "float32", "--json", str(path)]
    assert main(args + ["--jobs", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 processes" in out and "0 failed" in out
    assert json.loads(path.read_text())["jobs"] == 2
    assert main(args + ["--jobs", "1"]) == 0
    assert "processes" not in capsys.readouterr().out and json.loads(path.read_text())["jobs"] == 1
    assert main(["conformance", "--jobs", "0"]) == 2  # a usage error


def test_default_jobs_follow_cpus_and_the_size_of_the_plan(monkeypatch):
    import gankit.threads
    from gankit.conformance.suite import default_jobs

    pytest.importorskip("torch")
    small = Suite(**SELECTION)
    big = Suite(backends=["torch"], checks=["architecture.*", "loss.*"])
    monkeypatch.setattr(gankit.threads, "usable_cpus", lambda: 2)
    assert default_jobs(small) == 1  # a few seconds of work: not worth a worker's start-up
    assert default_jobs(big) == 2
    monkeypatch.setattr(gankit.threads, "usable_cpus", lambda: 1)
    assert default_jobs(big) == 1
    monkeypatch.setattr(gankit.threads, "usable_cpus", lambda: 64)
    assert 2 <= default_jobs(big) <= 4
