"""The conformance suite: every backend and every plugin against the same GAN mathematics.

Run it from the command line (``gankit conformance``), from pytest (``pytest
--gankit-backend=torch``, through the ``gankit`` pytest plugin), or from Python::

    from gankit.conformance import run_suite, assert_conforms

    report = run_suite(backends=["torch"], losses=["my_loss"])
    report.render()                       # the table
    assert_conforms(losses=["my_loss"])   # AssertionError listing each failed check

The suite is neutral: it reaches the frameworks only through the registered backends'
``ops()`` and ``build_trainer()``. Checks live in :mod:`.losses`, :mod:`.regularizers`,
:mod:`.training` and :mod:`.architectures`; each is registered by name in
:data:`CHECKS`.
"""

# Exports load on first use, so that pytest loading the plugin module
# (gankit.conformance.pytest_plugin) in every test run imports nothing more.
_EXPORTS = {
    "ACROSS": "core", "CHECKS": "core", "Case": "core", "CheckFailed": "core", "CheckResult": "core",
    "CheckSpec": "core", "NotApplicable": "core", "Report": "report", "PROFILES": "strategies",
    "Suite": "suite", "assert_conforms": "suite", "parse_choice": "suite", "run_suite": "suite",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'gankit.conformance' has no attribute {name!r}")
    import importlib

    if name == "CHECKS":
        importlib.import_module("gankit.conformance.suite")  # registers every check
    module = importlib.import_module(f"gankit.conformance.{_EXPORTS[name]}")
    return getattr(module, name)
