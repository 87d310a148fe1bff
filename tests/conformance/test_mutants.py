"""Every mutant plugin is caught by the named check that exists to catch it, while the
correct version of the same code passes every check."""

import pytest

from mutants import MUTANT_BACKENDS, MUTANT_LOSSES, MUTANT_REGULARIZERS

from gankit.conformance import Suite


@pytest.fixture(scope="module")
def loss_report(mutant_registry):
    # Everything on torch at float32 (fast); the backend-dependent mutant on both backends.
    pytest.importorskip("tensorflow")
    single = [n for n in MUTANT_LOSSES if n != "backend_dependent"]
    report = Suite(registry=mutant_registry, backends=["torch"], losses=["correct", *single], dtypes=["float32"]).run()
    across = Suite(registry=mutant_registry, backends=["torch", "tensorflow"], losses=["backend_dependent"],
                   checks=["loss.reference", "loss.backends_agree"], dtypes=["float32"]).run()
    report.results += across.results
    return report


@pytest.mark.parametrize("name", sorted(MUTANT_LOSSES))
def test_each_mutant_loss_is_caught_by_its_named_check(loss_report, name):
    expected = MUTANT_LOSSES[name][1]
    failed = loss_report.failed_checks(name)
    assert expected in failed, f"{name} escaped {expected}; failed only {sorted(failed)}"
    detail = loss_report.find(check=expected, subject=name, status="fail")[0].detail
    assert detail and "raised" not in detail  # a real finding, not a crash


def test_the_correct_loss_passes_every_check_beside_the_mutants(loss_report):
    assert loss_report.failed_checks("correct") == set()
    assert {r.status for r in loss_report.find(subject="correct")} == {"pass", "n/a"}


@pytest.fixture(scope="module")
def regularizer_report(mutant_registry):
    return Suite(registry=mutant_registry, backends=["torch"],
                 regularizers=["correct_r1", *MUTANT_REGULARIZERS]).run()


@pytest.mark.parametrize("name", sorted(MUTANT_REGULARIZERS))
def test_each_mutant_regularizer_is_caught_by_its_named_check(regularizer_report, name):
    assert MUTANT_REGULARIZERS[name][1] in regularizer_report.failed_checks(name)


def test_the_correct_regularizer_passes(regularizer_report):
    assert regularizer_report.failed_checks("correct_r1") == set()
    assert regularizer_report.find(subject="correct_r1", status="pass")


@pytest.mark.parametrize("name", sorted(MUTANT_BACKENDS))
def test_each_mutant_backend_is_caught_by_its_named_check(mutant_registry, name):
    check = MUTANT_BACKENDS[name][2]
    if check.startswith("architecture."):
        suite = Suite(registry=mutant_registry, backends=["torch", name], architectures=["mlp"], checks=[check])
    else:
        suite = Suite(registry=mutant_registry, backends=[name], losses=[], training=True, checks=[check])
    report = suite.run()
    assert check in report.failed_checks(), [r.to_json() for r in report.results]
    assert report.exit_status == 1


def test_the_real_backend_passes_the_same_checks(mutant_registry):
    checks = sorted({c for *_, c in MUTANT_BACKENDS.values()})
    report = Suite(registry=mutant_registry, backends=["torch"], architectures=["mlp"], training=True,
                   checks=checks).run()
    assert not report.failures, [r.to_json() for r in report.failures]
    assert report.find(check="training.n_critic", status="pass")
