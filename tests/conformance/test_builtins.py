"""The conformance suite on gankit's own backends and built-in plugins.

One module-scoped run, the representative part of ``gankit conformance``: every
registered loss and regularizer, the ``mlp`` architecture and both training steps, on
PyTorch and TensorFlow, at float32. The float64 and low-precision cases run on torch,
where they are cheap. (The full command also checks every architecture and every
dtype on both backends, and trains each loss on each backend.)
"""

import pytest

import gankit
from gankit.conformance import CHECKS, Suite


@pytest.fixture(scope="module")
def report(both_backends):
    checks = [name for name in CHECKS if name != "loss.discriminator_learns"]
    registry = gankit.get_registry()
    return Suite(backends=both_backends, losses=registry.names("loss"), regularizers=registry.names("regularizer"),
                 architectures=["mlp"], training=True, dtypes=["float32"], checks=checks).run()


def _failures(report):
    return "\n".join(f"{r.check} [{r.subject} {r.backend} {r.dtype}]: {r.detail}" for r in report.failures)


def test_every_builtin_plugin_conforms_on_both_backends(report):
    assert report.ok, _failures(report)
    assert report.exit_status == 0


def test_the_report_covers_every_check_plugin_and_backend(report):
    assert set(report.header["backends"]) == {"torch", "tensorflow"}
    assert all(report.header["backends"].values())  # versions
    planned = set(CHECKS) - {"loss.discriminator_learns"}
    assert {r.check for r in report.results} == planned
    registry = gankit.get_registry()
    subjects = {(r.kind, r.subject) for r in report.results}
    for kind in ("loss", "regularizer"):
        assert {(kind, n) for n in registry.names(kind)} <= subjects
    assert {("architecture", "mlp"), ("training", "step")} <= subjects
    # Every check passes somewhere: none is silently not applicable everywhere.
    assert {r.check for r in report.results if r.status == "pass"} == planned
    assert report.find(backend="across", status="pass")


@pytest.mark.parametrize("check, passes, not_applicable", [
    ("loss.optimal_discriminator", {"minimax", "non_saturating", "hinge", "wasserstein", "least_squares", "f_gan_kl",
                                    "f_gan_reverse_kl", "f_gan_pearson", "f_gan_js"}, {"relativistic"}),
    ("loss.shift_invariant", {"wasserstein", "relativistic", "relativistic_average"}, {"minimax", "hinge"}),
    ("loss.hinge_margin", {"hinge"}, {"minimax", "wasserstein"}),
    ("loss.least_squares_targets", {"least_squares"}, {"hinge", "non_saturating"}),
    ("loss.monotone", {"minimax", "hinge", "wasserstein", "relativistic_average"}, {"least_squares"}),
    ("loss.batch_order_invariant", {"minimax", "relativistic_average"}, {"relativistic"}),
])
def test_family_checks_run_exactly_where_metadata_declares_them(report, check, passes, not_applicable):
    for name in passes:
        assert {r.status for r in report.find(check=check, subject=name)} == {"pass"}, name
    for name in not_applicable:
        results = report.find(check=check, subject=name)
        assert results and all(r.status == "n/a" and check.split(".")[1] in r.detail for r in results), name


def test_saturation_matches_each_losss_declaration(report):
    details = {r.subject: r.detail for r in report.find(check="loss.saturation", backend="torch")}
    assert details["minimax"] == "saturating, as declared"
    assert details["non_saturating"] == "non-saturating, as declared"


def test_float64_and_low_precision_on_torch():
    pytest.importorskip("torch")
    registry = gankit.get_registry()
    report = Suite(backends=["torch"], losses=registry.names("loss"), regularizers=registry.names("regularizer"),
                   checks=["loss.[!d]*", "regularizer.*"],
                   dtypes=["float64", "float16", "bfloat16"]).run()
    assert report.ok, _failures(report)
    for dtype in ("float64", "float16", "bfloat16"):
        assert report.find(check="loss.reference", dtype=dtype, status="pass"), dtype
    # Regularizers are checked at full precision only.
    assert not report.find(check="regularizer.linear_closed_form", dtype="float16")


def test_params_variants_and_their_instance_metadata():
    pytest.importorskip("torch")
    report = Suite(backends=["torch"], dtypes=["float32"], losses=[
        'minimax:{"label_smoothing": 0.1}', 'least_squares:{"a": -1, "b": 1, "c": 0}'],
        regularizers=['gradient_penalty:{"one_sided": true, "target": 2.0}']).run()
    assert report.ok, _failures(report)
    smoothed = 'minimax(label_smoothing=0.1)'
    # Label smoothing moves the real term's optimum: the instance no longer declares monotone,
    # and the optimal discriminator is checked at the smoothed optimum p (1 - s) / (p + q).
    assert report.find(check="loss.monotone", subject=smoothed)[0].status == "n/a"
    optimum = report.find(check="loss.optimal_discriminator", subject=smoothed)[0]
    assert optimum.status == "pass" and "label smoothing 0.1" in optimum.detail
    assert report.find(check="loss.least_squares_targets", subject='least_squares(a=-1,b=1,c=0)')[0].status == "pass"
    # Both forms of a penalty with a one_sided switch are checked.
    detail = report.find(check="regularizer.linear_closed_form", dtype="float32")[0].detail
    assert "relu(||w|| - 2)^2" in detail and "(||w|| - 2)^2" in detail.replace("relu(||w|| - 2)^2", "")
