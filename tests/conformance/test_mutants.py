"""Every mutant plugin in mutants.py is caught by the named check that exists to catch it,
on torch and on tensorflow (a mutant that misbehaves on one backend only: there and
across backends), while the correct version of the same code passes every check."""

import json

import pytest

from mutants import BACKEND_SPECIFIC, MUTANT_BACKENDS, MUTANT_LOSSES, MUTANT_REGULARIZERS, mutant_loss, mutant_regularizer

from gankit.conformance import Suite

BACKENDS = ("torch", "tensorflow")


def _label(name, params):
    return name + (":" + json.dumps(params) if params else "")


@pytest.fixture(scope="module")
def loss_reports(mutant_registry, both_backends):
    """One run per mutant: its check, on both backends, at its dtype."""
    reports = {}
    for name in MUTANT_LOSSES:
        _, check, params, dtype = mutant_loss(name)
        checks = [check] + (["loss.extremes"] if name in BACKEND_SPECIFIC else [])
        reports[name] = Suite(registry=mutant_registry, backends=both_backends, losses=[_label(name, params)],
                              checks=checks, dtypes=[dtype]).run()
    return reports


def test_there_are_at_least_40_mutants():
    assert len(MUTANT_LOSSES) + len(MUTANT_REGULARIZERS) + len({k.split("_", 1)[1] for k in MUTANT_BACKENDS}) >= 40


@pytest.mark.parametrize("name", sorted(MUTANT_LOSSES))
def test_each_mutant_loss_is_caught_on_both_backends(loss_reports, name):
    check = mutant_loss(name)[1]
    report = loss_reports[name]
    failed = {(r.check, r.backend) for r in report.failures}
    if name in BACKEND_SPECIFIC:
        # Correct on torch, wrong on TensorFlow: caught there, or across backends.
        assert failed & {(check, "tensorflow"), (check, "across"), ("loss.extremes", "tensorflow")}, failed
    else:
        for backend in BACKENDS:
            assert (check, backend) in failed, f"{name} escaped {check} on {backend}; failed only {sorted(failed)}"
    for r in report.failures:
        assert r.detail and "raised" not in r.detail or name == "shape_arithmetic", r.detail  # a finding, not a crash


def test_every_failure_message_shows_the_example_both_values_and_the_tolerance(loss_reports):
    for name in ("sum_reduced", "wrong_optimum", "float64_in_float32", "tensorflow_clamp_20", "clamped_logits_30"):
        for r in loss_reports[name].failures:
            assert "tolerance" in r.detail, r.detail
            # Values to full precision (repr), not rounded to 6 digits.
            assert any(len(tok.strip("[],()")) >= 10 for tok in r.detail.split()), r.detail


def test_the_correct_loss_passes_every_check_on_both_backends(mutant_registry, both_backends):
    report = Suite(registry=mutant_registry, backends=both_backends, losses=["correct"],
                   dtypes=["float32", "float64"]).run()
    assert not report.failures, [r.to_json() for r in report.failures]
    assert {r.status for r in report.results} == {"pass", "n/a"}


def test_a_saturating_f_gan_generator_is_held_to_the_minimax_generator(mutant_registry, both_backends):
    """Declared saturating, an f-GAN G is -E b(f) (Nowozin et al.'s original objective), not the -E f default."""
    report = Suite(registry=mutant_registry, backends=both_backends, losses=["correct_saturating_kl"],
                   checks=["loss.asymptotes", "loss.saturation", "loss.monotone"], dtypes=["float32", "float64"]).run()
    assert not report.failures, [r.to_json() for r in report.failures]
    assert report.find(check="loss.asymptotes", status="pass")


@pytest.fixture(scope="module")
def regularizer_report(mutant_registry, both_backends):
    labels = [_label(n, mutant_regularizer(n)[2]) for n in MUTANT_REGULARIZERS]
    return Suite(registry=mutant_registry, backends=both_backends, regularizers=["correct_r1", *labels]).run()


@pytest.mark.parametrize("name", sorted(MUTANT_REGULARIZERS))
def test_each_mutant_regularizer_is_caught_on_both_backends(regularizer_report, name):
    check = mutant_regularizer(name)[1]
    failed = {(r.check, r.backend) for r in regularizer_report.failures if r.subject.split("(")[0] == name}
    for backend in BACKENDS:
        assert (check, backend) in failed, f"{name} escaped {check} on {backend}; failed only {sorted(failed)}"


def test_the_correct_regularizer_passes(regularizer_report):
    assert regularizer_report.failed_checks("correct_r1") == set()
    assert regularizer_report.find(subject="correct_r1", check="regularizer.evaluated_at", status="pass")


@pytest.mark.parametrize("name", sorted(MUTANT_BACKENDS))
def test_each_mutant_backend_is_caught_by_its_named_check(mutant_registry, name):
    inner, _, _, check = MUTANT_BACKENDS[name]
    pytest.importorskip(inner)
    if check.startswith("architecture."):
        suite = Suite(registry=mutant_registry, backends=[inner, name], architectures=["mlp"], checks=[check])
    else:
        suite = Suite(registry=mutant_registry, backends=[name], losses=[], training=True, checks=[check])
    report = suite.run()
    assert check in report.failed_checks(), [r.to_json() for r in report.results]
    assert report.exit_status == 1


def test_the_real_backends_pass_the_same_checks(mutant_registry, both_backends):
    checks = sorted({c for *_, c in MUTANT_BACKENDS.values()})
    report = Suite(registry=mutant_registry, backends=both_backends, architectures=["mlp"], training=True,
                   checks=checks).run()
    assert not report.failures, [r.to_json() for r in report.failures]
    assert report.find(check="training.n_critic", status="pass")


def test_the_docs_table_names_every_mutant_and_the_check_that_catches_it():
    from pathlib import Path

    from mutants import MUTATIONS

    text = (Path(__file__).resolve().parents[2] / "docs" / "conformance.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| loss `")
            or line.startswith("| regularizer `") or line.startswith("| backend `")}
    for name in MUTANT_LOSSES:
        assert f"`{mutant_loss(name)[1]}`" in rows[f"loss `{name}`"], name
    for name in MUTANT_REGULARIZERS:
        assert f"`{mutant_regularizer(name)[1]}`" in rows[f"regularizer `{name}`"], name
    for name, (*_, check) in MUTATIONS.items():
        assert f"`{check}`" in rows[f"backend `torch_{name}`, `tensorflow_{name}`"], name
