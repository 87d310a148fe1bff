"""Regularizer weight schedules: ``[[regularizers]] schedule = "linear"`` weights a
penalty by the same factor the learning-rate schedules use, on both backends."""

import numpy as np
import pytest
from pydantic import BaseModel

import gankit
from gankit import (
    Activation,
    ConfigError,
    Dense,
    Loss,
    LossMeta,
    NetSpec,
    OptimizerSettings,
    Regularizer,
    RegularizerMeta,
    TrainSetup,
    WeightSchedule,
)
from gankit.protocol import schedule_factor


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


class LogitParams(BaseModel):
    weight: float = 1.0


class LogitPenalty(Regularizer):
    """weight * mean(D(real)^2): a penalty whose value a test can recompute from D."""

    meta = RegularizerMeta(evaluated_at="real", formula="w * E[D(x)^2]", paper="")
    Params = LogitParams

    def __call__(self, ops, discriminator, real, fake):
        logits = discriminator(real)
        return self.params.weight * ops.mean(logits * logits)


G = NetSpec(name="g", input_shape=(4,), layers=[Dense(units=16), Activation(fn="relu"), Dense(units=2)])
D = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=16), Activation(fn="leaky_relu"), Dense(units=1)])
REAL = np.random.default_rng(0).normal(size=(6, 16, 2)).astype(np.float32) + 2


def trainer(backend_name, weight=1.0, schedules=None, total_steps=4, d_lr=0.05):
    setup = TrainSetup(generator=G, discriminator=D, loss=NonSaturating(),
                       regularizers={"logit": LogitPenalty(LogitParams(weight=weight))},
                       g_optimizer=OptimizerSettings("sgd", 0.05), d_optimizer=OptimizerSettings("sgd", d_lr),
                       latent_dim=4, batch_size=16, seed=0, device="cpu", total_steps=total_steps,
                       initial_weights=gankit.initial_weights(G, D, "default", 0),
                       regularizer_schedules=schedules or {})
    return gankit.get_backend(backend_name).build_trainer(setup)


def test_weight_schedule_factor():
    assert WeightSchedule().constant and WeightSchedule().at(3, 4) == 1.0
    lin = WeightSchedule("linear", 0.2)
    assert [lin.at(i, 4) for i in (0, 2, 4, 9)] == pytest.approx([1.0, 0.6, 0.2, 0.2])
    cos = WeightSchedule("cosine", 0.0)
    assert cos.at(2, 4) == pytest.approx(0.5) and cos.at(4, 4) == pytest.approx(0.0)
    assert schedule_factor("linear", 0.0, 5, 0) == 1.0  # no step count: no schedule
    # the learning rates follow the same factor
    assert OptimizerSettings("adam", 0.5, schedule="cosine", final_lr_fraction=0.1).lr_at(1, 4) == \
        pytest.approx(0.5 * schedule_factor("cosine", 0.1, 1, 4))


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_reported_penalty_is_the_weighted_one(backend_name, kind):
    """Each step reports factor(step) * w * mean(D(real)^2), with D as it was before the step."""
    schedule = WeightSchedule(kind, 0.0)
    t = trainer(backend_name, weight=0.5, schedules={"logit": schedule}, total_steps=4)
    for i in range(6):  # the last two steps are past the end: the factor stays at 0
        before = t.discriminate(REAL[i])
        expected = schedule.at(i, 4) * 0.5 * float(np.mean(before.astype(np.float64) ** 2))
        got = t.train_step(REAL[i]).extras["penalty_logit"]
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-7), (i, got, expected)
    assert t.train_step(REAL[0]).extras["penalty_logit"] == 0.0


def test_the_weight_scales_the_update(backend_name):
    """At step 1 of 2 a linear schedule weighs the penalty by 0.5: the update equals that
    of a constant penalty with half the weight, and differs from the full one."""
    scheduled = trainer(backend_name, weight=1.0, schedules={"logit": WeightSchedule("linear", 0.0)}, total_steps=2)
    half = trainer(backend_name, weight=0.5, total_steps=2)
    full = trainer(backend_name, weight=1.0, total_steps=2)
    for t in (scheduled, half, full):
        t.step_count = 1
        t.train_step(REAL[0])
    w = {name: t.parameters_of("discriminator") for name, t in (("s", scheduled), ("h", half), ("f", full))}
    for key in w["s"]:
        np.testing.assert_allclose(w["s"][key], w["h"][key], rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(w["s"][k], w["f"][k], rtol=1e-4, atol=1e-5) for k in w["s"])


def test_a_schedule_for_a_missing_regularizer_is_refused(backend_name):
    with pytest.raises(ConfigError, match="r1"):
        trainer(backend_name, schedules={"r1": WeightSchedule("linear")})


def test_config_carries_the_schedule_to_the_trainer(tmp_path):
    path = tmp_path / "r1.toml"
    path.write_text('[training]\nsteps = 10\nbatch_size = 16\n\n'
                    '[[regularizers]]\nname = "r1"\nparams = { gamma = 0.1 }\n'
                    'schedule = "linear"\nfinal_weight_fraction = 0.25\n')
    cfg = gankit.load_config(path, environ={})
    assert cfg.regularizers[0].schedule == "linear" and cfg.regularizers[0].params["gamma"] == 0.1
    from gankit.training import build

    exp = build(cfg)
    assert exp.trainer.setup.regularizer_schedules == {"r1": WeightSchedule("linear", 0.25)}
    first = exp.trainer.train_step(np.zeros((16, 2), np.float32) + 1).extras["penalty_r1"]
    assert first >= 0.0


def test_config_rejects_a_bad_schedule(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[regularizers]]\nname = "r1"\nschedule = "exponential"\n')
    with pytest.raises(ConfigError, match="schedule"):
        gankit.load_config(path, environ={})
    path.write_text('[[regularizers]]\nname = "r1"\nschedule = "linear"\nfinal_weight_fraction = 2\n')
    with pytest.raises(ConfigError, match="final_weight_fraction"):
        gankit.load_config(path, environ={})
