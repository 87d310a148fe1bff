"""Discriminator rejection sampling: the acceptance rule, the theorem it rests on, its
limits and errors (numpy), then the wiring into evaluation and `gankit sample` on each backend."""

import json

import numpy as np
import pytest
from scipy import stats

import gankit
from gankit.cli import main
from gankit.rejection import EPS, acceptance_probability, rejection_sample


def uniform_latents(k, rng):
    return rng.uniform(0.0, 1.0, (k, 1))


def identity(z, y=None):
    return np.asarray(z)


def density_ratio_logit(x, y=None):
    """The optimal discriminator's logit for p_g = U[0, 1] and p_data(x) = 2x on [0, 1]:
    log p_data / p_g = log 2x, largest (log 2) at x = 1."""
    return np.log(2.0 * np.clip(np.asarray(x)[:, 0], 1e-300, None))


def test_exact_acceptance_is_the_density_ratio_over_its_maximum():
    logits = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(acceptance_probability(logits, 2.0, None), np.exp(logits - 2.0 - EPS), rtol=1e-9)
    assert acceptance_probability(np.array([5.0]), 2.0, None)[0] <= 1.0  # above the estimate: clipped to 1


def test_gamma_centres_acceptance_on_the_percentile():
    # A sharp discriminator: the largest logit far above most, so exp(l - l_max) accepts
    # almost nothing; the shift makes the sample at the percentile a coin flip.
    logits = np.linspace(-8.0, 0.0, 101)
    exact = acceptance_probability(logits, 0.0, None)
    shifted = acceptance_probability(logits, 0.0, 0.8)
    assert exact[80] < 0.3 and shifted[80] == pytest.approx(0.5, abs=0.01)
    assert np.all(shifted >= exact) and np.all(np.diff(shifted) > 0)  # still ordered by the logit
    assert shifted[0] < 0.01  # the least realistic samples are still rejected
    stricter = acceptance_probability(logits, 0.0, 0.95)
    assert np.all(stricter[:-1] < shifted[:-1])
    assert np.isfinite(acceptance_probability(np.array([-1e6, 0.0]), 0.0, 0.5)).all()


def test_exact_drs_turns_the_generator_into_the_data_distribution():
    # The theorem DRS rests on: with D's logit = log p_data / p_g, accepting with
    # exp(l - l_max) samples p_data. Here p_data has CDF x^2 on [0, 1].
    result = rejection_sample(identity, density_ratio_logit, uniform_latents, 4000, percentile=None, seed=3)
    x = result.samples[:, 0]
    assert stats.kstest(x, lambda t: np.clip(t, 0, 1) ** 2).pvalue > 1e-3
    assert abs(x.mean() - 2 / 3) < 0.02
    assert result.logit_max == pytest.approx(np.log(2.0), abs=1e-3)
    assert result.acceptance == pytest.approx(0.5, abs=0.03)  # E[2x / 2] under U[0, 1]
    plain = uniform_latents(4000, np.random.default_rng(3))[:, 0]
    assert stats.kstest(plain, lambda t: np.clip(t, 0, 1) ** 2).pvalue < 1e-6  # the test can tell them apart


def test_a_higher_percentile_is_stricter():
    means, rates = [], []
    for percentile in (0.2, 0.5, 0.9):
        r = rejection_sample(identity, density_ratio_logit, uniform_latents, 3000, percentile=percentile, seed=1)
        means.append(r.samples.mean())
        rates.append(r.acceptance)
    assert rates[0] > rates[1] > rates[2]
    assert means[0] < means[1] < means[2]
    # Here F's median is 0 (at x = 1/2), so the 0.5 percentile is exact rejection sampling.
    assert rates[1] == pytest.approx(0.5, abs=0.03) and means[1] == pytest.approx(2 / 3, abs=0.02)


def test_same_seed_same_samples():
    a = rejection_sample(identity, density_ratio_logit, uniform_latents, 500, seed=7)
    b = rejection_sample(identity, density_ratio_logit, uniform_latents, 500, seed=7)
    c = rejection_sample(identity, density_ratio_logit, uniform_latents, 500, seed=8)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)


def test_labels_are_cycled_scored_and_kept():
    seen = []

    def discriminate(x, y):
        seen.append(y.copy())
        return np.where(y == 2, -50.0, 0.0)  # class 2 is never realistic

    r = rejection_sample(lambda z, y: np.c_[z, y], discriminate, uniform_latents, 300, percentile=None,
                         label_cycle=np.array([0, 1, 2]), burn_in=30, batch_size=30)
    assert set(np.unique(np.concatenate(seen))) == {0, 1, 2}
    np.testing.assert_array_equal(r.labels, r.samples[:, 1])  # each sample keeps the label it was made with
    assert set(np.unique(r.labels)) == {0, 1}


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(gankit.ConfigError, match=r"percentile must be in \[0, 1\)"):
        rejection_sample(identity, density_ratio_logit, uniform_latents, 10, percentile=1.0)
    with pytest.raises(gankit.ConfigError, match="n >= 1"):
        rejection_sample(identity, density_ratio_logit, uniform_latents, 0)
    with pytest.raises(gankit.GankitError, match="NaN or infinite logit"):
        rejection_sample(identity, lambda x, y: np.full(len(x), np.nan), uniform_latents, 10)
    # A discriminator that rejects (almost) everything runs into the limit instead of looping forever.
    hopeless = lambda x, y: -1e4 * np.asarray(x)[:, 0]  # noqa: E731  (accepts ~1e-4 of U[0, 1])
    with pytest.raises(gankit.GankitError, match=r"accepted \d+ of \d+ candidates before its limit"):
        rejection_sample(identity, hopeless, uniform_latents, 100, percentile=None, burn_in=100, max_candidates=5000)


def test_config_section_is_strict():
    cfg = gankit.load_config({"sampling": {"rejection": "drs"}})
    assert cfg.sampling.rejection == "drs" and cfg.sampling.drs_percentile is None  # exact by default
    with pytest.raises(gankit.ConfigError, match="sampling.rejection"):
        gankit.load_config({"sampling": {"rejection": "mh"}})
    with pytest.raises(gankit.ConfigError, match="sampling.drs_percentile"):
        gankit.load_config({"sampling": {"drs_percentile": 1.5}})


# -- wiring, on each backend ----------------------------------------------------------------
@pytest.fixture(scope="module", params=["torch", "tensorflow"])
def ring_run(request, tmp_path_factory):
    """A short ring8 run with DRS configured for evaluation, per backend."""
    pytest.importorskip(request.param)
    out = tmp_path_factory.mktemp(f"drs-{request.param}")
    return gankit.train({
        "backend": request.param, "data": {"name": "ring8"},
        "generator": {"name": "mlp", "params": {"hidden": [32, 32]}},
        "discriminator": {"name": "mlp", "params": {"hidden": [32, 32], "activation": "leaky_relu"}},
        "optimizers": {"generator": {"lr": 1e-3}, "discriminator": {"lr": 1e-3}},
        "training": {"steps": 150, "batch_size": 64, "num_samples": 200, "tensorboard": False},
        "evaluation": {"num_samples": 400, "every": 150, "metrics": [{"name": "modes"}]},
        "sampling": {"rejection": "drs", "drs_percentile": 0.5},
        "output": {"dir": str(out), "name": "run"},
    })


def test_evaluation_uses_drs_and_says_so(ring_run):
    line = json.loads((ring_run.directory / "eval.jsonl").read_text().splitlines()[-1])
    assert line["sampler"] == "drs" and 0 < line["acceptance"] < 1
    assert line["num_samples"] == 400


def test_drs_samples_score_higher_with_the_discriminator(ring_run):
    gan = gankit.load_checkpoint(ring_run.directory)
    plain = gan.sample(2000, seed=0, rejection="none")
    kept = gan.sample(2000, seed=0)  # the run's sampling table: drs
    assert plain.shape == kept.shape == (2000, 2)
    d = gan.trainer.discriminate
    assert np.mean(d(kept)) > np.mean(d(plain))
    stricter = gan.sample(2000, seed=0, percentile=0.95)
    assert np.mean(d(stricter)) > np.mean(d(kept))


def test_gankit_sample_rejection_flags(ring_run, tmp_path, capsys):
    other = "tensorflow" if ring_run.config.backend == "torch" else "torch"
    pytest.importorskip(other)
    for backend in (ring_run.config.backend, other):
        out = tmp_path / f"{backend}.npy"
        code = main(["sample", str(ring_run.directory), "-n", "300", "--out", str(out), "--backend", backend,
                     "--rejection", "drs", "--drs-percentile", "0.9"])
        assert code == 0 and np.load(out).shape == (300, 2)
    a, b = (np.load(tmp_path / f"{x}.npy") for x in (ring_run.config.backend, other))
    # The same weights give the same logits on both backends, so (all but borderline) the same
    # picks; one borderline flip shifts the rest, so match each sample to its nearest.
    nearest = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert np.mean(nearest < 1e-4) > 0.9
    code = main(["sample", str(ring_run.directory), "--rejection", "drs", "--drs-percentile", "1.5"])
    assert code == 2 and "drs-percentile" in capsys.readouterr().err
