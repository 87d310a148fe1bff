"""gankit's pytest plugin: the conformance suite inside anyone's test run.

Installed with gankit (the ``pytest11`` entry point ``gankit``); it does nothing unless
asked. Two ways to ask:

* on the command line, ``pytest --gankit-backend=torch [--gankit-loss=my_loss ...]``
  adds every planned check as its own test item (``gankit-conformance::loss.monotone
  [my_loss-torch-float32]``): a failure shows the property and the example that broke
  it, a check that does not apply is a skip with its reason;
* from a test, the ``gankit_conformance`` fixture runs the suite on a selection and
  fails with the list of broken checks::

      def test_my_loss_conforms(gankit_conformance):
          gankit_conformance(losses=["my_loss"])

Options: ``--gankit-backend`` (repeatable, or ``all``), ``--gankit-loss``,
``--gankit-regularizer``, ``--gankit-architecture`` (repeatable; ``NAME`` or
``NAME:{json params}``), ``--gankit-training``, ``--gankit-check`` (glob on check
names), ``--gankit-dtype``, ``--gankit-thorough``. Without a plugin selection every
registered plugin and the backends' training steps are checked.

This module imports nothing from gankit until the suite is asked for, so it costs a
test run that does not use it nothing.
"""

from __future__ import annotations

import pytest

COLLECTOR = "gankit-conformance"


def pytest_addoption(parser):
    group = parser.getgroup("gankit", "gankit conformance suite")
    group.addoption("--gankit-backend", action="append", default=None, metavar="NAME",
                    help="run the gankit conformance suite on this backend (repeatable; 'all' for every installed one)")
    group.addoption("--gankit-loss", action="append", default=None, metavar="NAME",
                    help="check only this loss (repeatable; NAME or NAME:{json params})")
    group.addoption("--gankit-regularizer", action="append", default=None, metavar="NAME",
                    help="check only this regularizer (repeatable)")
    group.addoption("--gankit-architecture", action="append", default=None, metavar="NAME",
                    help="check only this architecture (repeatable)")
    group.addoption("--gankit-training", action="store_true", default=False,
                    help="also check the backends' training steps when plugins are selected")
    group.addoption("--gankit-check", action="append", default=None, metavar="GLOB",
                    help="only checks whose name matches, e.g. 'loss.*' or '*.monotone' (repeatable)")
    group.addoption("--gankit-dtype", action="append", default=None, metavar="DTYPE",
                    help="only these dtypes: float32, float64, float16, bfloat16 (repeatable)")
    group.addoption("--gankit-thorough", action="store_true", default=False,
                    help="the thorough hypothesis profile: many random examples, shrunk failures")


def pytest_configure(config):
    config.addinivalue_line("markers", "gankit_conformance: a check of the gankit conformance suite")


def _backends(config) -> list[str] | None:
    names = config.getoption("gankit_backend") or []
    names = [n.strip() for text in names for n in text.split(",") if n.strip()]
    return None if not names or "all" in names else names


def _selection(config) -> dict:
    training = config.getoption("gankit_training")
    return dict(
        backends=_backends(config),
        losses=config.getoption("gankit_loss"),
        regularizers=config.getoption("gankit_regularizer"),
        architectures=config.getoption("gankit_architecture"),
        training=True if training else None,
        checks=config.getoption("gankit_check"),
        dtypes=config.getoption("gankit_dtype"),
        profile="thorough" if config.getoption("gankit_thorough") else "ci",
    )


def _suite(config):
    suite = getattr(config, "_gankit_suite", None)
    if suite is None:
        from gankit.conformance.suite import Suite
        from gankit.errors import GankitError

        try:
            suite = Suite(**_selection(config))
        except GankitError as exc:
            raise pytest.UsageError(f"gankit conformance: {exc.one_line()}") from None
        config._gankit_suite = suite
    return suite


def pytest_report_header(config):
    if not config.getoption("gankit_backend"):
        return None
    header = _suite(config).header()
    versions = ", ".join(f"{k} {v}" for k, v in header["backends"].items())
    lines = [f"gankit conformance: gankit {header['gankit']}, {versions}; profile {header['profile']}"]
    lines += [f"  backend {k} not tested: {v}" for k, v in header["unavailable"].items()]
    return lines


class ConformanceFailure(AssertionError):
    """A conformance check failed; carries its result for the report."""

    def __init__(self, result):
        super().__init__(result.detail)
        self.result = result


class ConformanceItem(pytest.Item):
    """One planned case of the suite, as a test."""

    def __init__(self, *, case, **kwargs):
        super().__init__(**kwargs)
        self.case = case
        self.add_marker("gankit_conformance")

    def runtest(self):
        result = self.case.run()
        self.user_properties.append(("gankit_conformance", result.to_json()))
        if result.status == "n/a":
            pytest.skip(f"not applicable: {result.detail}")
        if result.status == "fail":
            raise ConformanceFailure(result)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, ConformanceFailure):
            r = excinfo.value.result
            spec = self.case.spec
            where = " ".join(x for x in (r.backend, r.dtype) if x)
            origin = f" (distribution {r.distribution})" if r.distribution else ""
            return (f"{r.check} failed for {r.kind} {r.subject!r}{origin} on {where}\n"
                    f"  property: {spec.doc}\n  {r.detail}")
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"{COLLECTOR}::{self.name}"


class ConformanceCollector(pytest.Collector):
    """The parent node of the suite's items (they are made from the plan, not from files)."""

    def collect(self):
        return []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    # tryfirst: the items are in place before -k / -m deselection runs.
    if not config.getoption("gankit_backend"):
        return
    suite = _suite(config)
    parent = ConformanceCollector.from_parent(session, name=COLLECTOR, nodeid=COLLECTOR)
    items.extend(ConformanceItem.from_parent(parent, name=case.id, case=case) for case in suite.cases())


@pytest.fixture
def gankit_conformance(request):
    """Run the conformance suite on a selection and fail listing every broken check.

    Keyword arguments as :class:`gankit.conformance.Suite` (``losses``,
    ``regularizers``, ``architectures``, ``training``, ``checks``, ``dtypes``,
    ``backends``); backends, dtypes, checks and profile default to the
    ``--gankit-*`` options, else every installed backend, dtype and check and the
    ``ci`` profile. Returns the report.
    """

    def run(**selection):
        from gankit.conformance.suite import Suite

        defaults = _selection(request.config)
        for key in ("backends", "profile", "dtypes", "checks"):
            selection.setdefault(key, defaults[key])
        report = Suite(**selection).run()
        if report.failures:
            lines = [f"{len(report.failures)} gankit conformance check(s) failed:"]
            lines += [f"  {r.check} [{r.subject} · {' '.join(x for x in (r.backend, r.dtype) if x)}]: {r.detail}"
                      for r in report.failures]
            pytest.fail("\n".join(lines), pytrace=False)
        return report

    return run
