"""The up-front resource checks: threads bound, memory estimate and its limit."""

import pytest

from gankit import budget
from gankit.config import load_config
from gankit.errors import ConfigError
from gankit.nets import Activation, BatchNorm, Dense, NetSpec


def specs(width=4):
    g = NetSpec(input_shape=(2,), layers=[Dense(units=width), BatchNorm(), Activation(fn="relu"), Dense(units=2)])
    d = NetSpec(input_shape=(2,), layers=[Dense(units=width), Activation(fn="relu"), Dense(units=1)])
    return g, d


def cfg(**training):
    return load_config({"training": {"batch_size": 8, "num_samples": 16, **training}}, preset=None, environ={})


def test_estimate_counts_parameters_activations_data_and_samples():
    g, d = specs()
    est = budget.estimate(cfg(prefetch=2, n_critic=3), (2,), g, d)
    g_params, d_params = 2 * 4 + 4 + 4 + 4 + 4 * 2 + 2, 2 * 4 + 4 + 4 * 1 + 1  # dense, batch norm scale/shift
    g_buffers = 4 + 4  # batch norm running mean and variance (its step counter is not float)
    assert est.parameters >= 4 * (4 * (g_params + d_params) + g_buffers)
    # each layer's output for G's batch and D's real and fake batches, and as much for the gradients
    g_act = 2 + 4 + 4 + 4 + 2
    d_act = 2 + 4 + 4 + 1
    assert est.activations == 4 * 2 * 8 * (g_act + 2 * d_act)
    assert est.data == 4 * (2 + 1) * 3 * 8 * 2
    assert est.samples == 4 * 16 * (g_act + 2)
    assert est.total == est.parameters + est.activations + est.data + est.samples
    with_ema = budget.estimate(cfg(ema_decay=0.9), (2,), g, d)
    assert with_ema.parameters > budget.estimate(cfg(), (2,), g, d).parameters


def test_memory_limit_from_the_environment(monkeypatch):
    g, d = specs()
    monkeypatch.setenv(budget.MEMORY_ENV, "1000")
    with pytest.raises(ConfigError, match=r"needs at least .* of memory .* and this machine has 0.0 MB") as err:
        budget.check_memory(cfg(), (2,), g, d)
    assert "GANKIT_MEMORY_LIMIT" in err.value.one_line()
    monkeypatch.setenv(budget.MEMORY_ENV, "1e9")
    assert budget.check_memory(cfg(), (2,), g, d).total < 1e9
    monkeypatch.setenv(budget.MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match="is not a positive number of bytes"):
        budget.memory_limit()
    monkeypatch.delenv(budget.MEMORY_ENV)
    assert budget.memory_limit() > 2**28  # the machine's RAM


@pytest.mark.parametrize("what, training, fix", [
    ("activations", {"batch_size": 10**7}, "lower training.batch_size"),
    ("samples", {"num_samples": 10**8}, "lower training.num_samples"),
    ("data", {"n_critic": 1000, "prefetch": 64, "batch_size": 40_000}, "training.n_critic or training.prefetch"),
])
def test_the_hint_names_the_largest_part(monkeypatch, what, training, fix):
    g, d = specs()
    monkeypatch.setenv(budget.MEMORY_ENV, "1e8")
    with pytest.raises(ConfigError, match=fix):
        budget.check_memory(cfg(**training), (2,), g, d)
    assert budget.estimate(cfg(**training), (2,), g, d).largest() == what


def test_threads_bound_by_the_cpus():
    budget.check_threads(None, cpus=2)
    budget.check_threads(8, cpus=2)
    with pytest.raises(ConfigError, match="training.threads = 9 is more than this machine can use: it has 2 usable CPUs, so at most 8"):
        budget.check_threads(9, cpus=2)
    with pytest.raises(ConfigError, match="1 usable CPU, so at most 4"):
        budget.check_threads(5000, cpus=1)


def test_samples_check(monkeypatch):
    g, _ = specs()
    monkeypatch.setenv(budget.MEMORY_ENV, "1e6")
    budget.check_samples(100, g)
    with pytest.raises(ConfigError, match="--num-samples = 1,000,000 needs at least"):
        budget.check_samples(10**6, g, "--num-samples")
