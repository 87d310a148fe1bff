"""The report: a table of plugin x property x backend, JSON, and the exit status.

Each cell of the table sums up one check on one subject and backend over the dtypes
it ran at: ``pass``, ``FAIL`` (with the dtypes that failed), or ``n/a`` (with the
reason underneath the table). The ``across`` column holds the checks that compare
backends with each other. The header names the single-backend architectures (native
models of one backend): their checks elsewhere and across backends are ``n/a``.
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from gankit.conformance.core import ACROSS, CHECKS, CheckResult


@dataclass
class Report:
    header: dict
    results: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """The run's CPU time (the process's, every thread)."""

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status == "fail"]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        c = Counter(r.status for r in self.results)
        return {"pass": c["pass"], "fail": c["fail"], "n/a": c["n/a"]}

    def find(self, check: str | None = None, subject: str | None = None, backend: str | None = None,
             dtype: str | None = None, status: str | None = None) -> list[CheckResult]:
        """Results matching every given field."""
        want = {"check": check, "subject": subject, "backend": backend, "dtype": dtype, "status": status}
        return [r for r in self.results if all(v is None or getattr(r, k) == v for k, v in want.items())]

    def failed_checks(self, subject: str | None = None) -> set[str]:
        """Names of the checks that failed (for ``subject``)."""
        return {r.check for r in self.failures if subject is None or r.subject == subject}

    def durations(self) -> list[tuple[str, str, float, float, int]]:
        """``(check, backend, seconds, cpu_seconds, cases)`` per check and backend (summed
        over subjects and dtypes), most CPU time first: where a run's time goes."""
        total: dict[tuple[str, str], list] = {}
        for r in self.results:
            entry = total.setdefault((r.check, r.backend), [0.0, 0.0, 0])
            entry[0] += r.seconds
            entry[1] += r.cpu_seconds
            entry[2] += 1
        return sorted(((c, b, t, cpu, n) for (c, b), (t, cpu, n) in total.items()), key=lambda x: (-x[3], -x[2]))

    def seconds_by_kind(self) -> dict[str, tuple[float, float]]:
        """``kind -> (seconds, cpu_seconds)`` per kind of check (loss, regularizer, training,
        architecture), most CPU time first."""
        total: dict[str, list] = {}
        for r in self.results:
            entry = total.setdefault(r.kind, [0.0, 0.0])
            entry[0] += r.seconds
            entry[1] += r.cpu_seconds
        return {k: (t, cpu) for k, (t, cpu) in sorted(total.items(), key=lambda kv: (-kv[1][1], -kv[1][0]))}

    # -- JSON ---------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            **self.header,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "summary": self.counts(),
            "checks": {name: spec.doc for name, spec in CHECKS.items()},
            "results": [r.to_json() for r in self.results],
        }

    def write_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    # -- the table ------------------------------------------------------------------------
    def columns(self) -> list[str]:
        backends = list(self.header.get("backends", {}))
        has_across = any(r.backend == ACROSS for r in self.results)
        return backends + ([ACROSS] if has_across else [])

    def rows(self) -> "OrderedDict[tuple[str, str, str], dict[str, list[CheckResult]]]":
        rows: OrderedDict = OrderedDict()
        for r in self.results:
            rows.setdefault((r.kind, r.subject, r.check), {}).setdefault(r.backend, []).append(r)
        return rows

    @staticmethod
    def cell(results: list[CheckResult]) -> tuple[str, str]:
        """(text, rich style) summing up one check on one backend over its dtypes."""
        if not results:
            return "", ""
        failed = [r for r in results if r.status == "fail"]
        na = [r for r in results if r.status == "n/a"]
        if failed:
            dts = ",".join(_short(r.dtype) for r in failed if r.dtype)
            return f"FAIL {dts}".strip(), "bold red"
        if len(na) == len(results):
            return "n/a", "dim"
        if na:
            return "pass (n/a " + ",".join(_short(r.dtype) for r in na) + ")", "green"
        return "pass", "green"

    def render(self, console=None, show_passed_details: bool = False, durations: int = 0) -> None:
        """The header, the table, the reasons for n/a, the failures, then (``durations``
        > 0) that many slowest checks and the time per kind, and the summary line."""
        from rich import box
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = console or Console(highlight=False, soft_wrap=True)
        h = self.header
        versions = ", ".join(f"{k} {v}" for k, v in h.get("backends", {}).items())
        console.print(f"[bold]gankit conformance[/] — gankit {h.get('gankit')}, {escape(versions)}; "
                      f"python {h.get('python')}, {escape(str(h.get('platform')))}; hypothesis profile "
                      f"[bold]{h.get('profile')}[/]" + (f"; {h['jobs']} processes" if h.get("jobs", 1) > 1 else ""))
        for why in h.get("worker_errors", []):
            console.print(f"  a worker process stopped ({escape(why)}); its checks ran in the main process",
                          style="yellow")
        for name, why in h.get("unavailable", {}).items():
            console.print(f"  backend {name}: not tested ({escape(why)})", style="yellow")
        for subject, only in h.get("single_backend", {}).items():
            console.print(f"  architecture {escape(subject)}: single-backend, built for {escape(' and '.join(only))} "
                          "only; its checks on other backends and across backends are not applicable", style="yellow")
        columns = self.columns()
        table = Table(show_lines=False, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("plugin", "property"):
            table.add_column(col, no_wrap=True)
        for col in columns:
            table.add_column(col, no_wrap=True)
        notes: OrderedDict[str, int] = OrderedDict()
        last_subject = None
        for (kind, subject, check), by_backend in self.rows().items():
            cells = []
            for col in columns:
                text, style = self.cell(by_backend.get(col, []))
                reasons = {r.detail for r in by_backend.get(col, []) if r.status == "n/a" and r.detail}
                for reason in sorted(reasons):
                    notes.setdefault(reason, len(notes) + 1)
                marks = "".join(f"[{notes[x]}]" for x in sorted(reasons))
                cells.append(f"[{style}]{escape(text)}[/]{escape(marks)}" if style else "")
            first = (kind, subject) != last_subject
            if first and last_subject is not None:
                table.add_section()
            last_subject = (kind, subject)
            table.add_row(escape(f"{kind} {subject}") if first else "", check.split(".", 1)[1], *cells)
        if not console.is_terminal:
            # Logs and pipes: never truncate a cell to the default 80 columns.
            width = max(console.width, sum(_width(c) for c in table.columns) + 3 * len(table.columns))
            console = Console(file=console.file, width=width, highlight=False, soft_wrap=True,
                              color_system=None, force_terminal=False)
        console.print(table)
        if notes:
            console.print("[bold]not applicable[/]")
            for reason, i in notes.items():
                console.print(f"  [{i}] {escape(reason)}", markup=True)
        if self.failures:
            console.print("[bold red]failures[/]")
            for r in self.failures:
                where = " ".join(x for x in (r.backend, r.dtype) if x)
                console.print(f"  [red]{escape(r.check)}[/] [{escape(r.subject)} · {escape(where)}] {escape(r.detail)}")
        if durations > 0:
            by_kind = ", ".join(f"{kind} {cpu:.1f}s" for kind, (_, cpu) in self.seconds_by_kind().items())
            console.print(f"[bold]slowest checks[/] (CPU and wall seconds, summed over subjects and dtypes; "
                          f"CPU by kind: {by_kind}; the run: {self.cpu_seconds:.1f}s CPU)")
            for check, backend, t, cpu, n in self.durations()[:durations]:
                console.print(escape(f"  {cpu:7.2f}s CPU {t:7.2f}s wall  {check} [{backend}] "
                                     f"({n} case{'' if n == 1 else 's'})"))
        c = self.counts()
        style = "bold red" if self.failures else "bold green"
        console.print(f"[{style}]{c['fail']} failed[/], {c['pass']} passed, {c['n/a']} not applicable "
                      f"in {self.seconds:.1f}s")


def _width(column) -> int:
    from rich.text import Text

    cells = [column.header, *column.cells]
    return max(Text.from_markup(c).cell_len if isinstance(c, str) else 0 for c in cells)


def _short(dtype: str) -> str:
    return {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16"}.get(dtype, dtype)
