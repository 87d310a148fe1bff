"""torch's own pieces of the step: mixed precision (gankit_torch.amp), one optimizer update
(gankit_torch.update.backward_and_step), the saved random state (gankit_torch.streams).

float16 needs a CUDA GPU, and gankit.trainer.check_precision (the one place of that rule)
refuses it elsewhere; these tests lift that rule to run torch's float16 code path on the
cpu, where torch has float16 autocast and a GradScaler too.
"""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

import gankit  # noqa: E402
import gankit.trainer  # noqa: E402
from gankit import (  # noqa: E402
    Activation, CheckpointError, ConfigError, Dense, Loss, LossMeta, NetSpec, OptimizerSettings, TrainSetup,
)
from gankit_torch.amp import Precision  # noqa: E402
from gankit_torch.backend import TorchBackend  # noqa: E402
from gankit_torch.optim import build_optimizer  # noqa: E402
from gankit_torch.update import backward_and_step  # noqa: E402


class NonSaturating(Loss):
    meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

    def discriminator(self, ops, real_logits, fake_logits):
        return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

    def generator(self, ops, fake_logits, real_logits=None):
        return ops.mean(ops.softplus(-fake_logits))


G = NetSpec(name="g", input_shape=(4,), layers=[Dense(units=16), Activation(fn="relu"), Dense(units=2)])
D = NetSpec(name="d", input_shape=(2,), layers=[Dense(units=16), Activation(fn="leaky_relu"), Dense(units=1)])
REAL = np.random.default_rng(0).normal(size=(6, 8, 2)).astype(np.float32)


def make(precision="float32", seed=0, n_critic=1):
    setup = TrainSetup(generator=G, discriminator=D, loss=NonSaturating(), regularizers={},
                       g_optimizer=OptimizerSettings("adam", 1e-2), d_optimizer=OptimizerSettings("adam", 1e-2),
                       latent_dim=4, batch_size=8, n_critic=n_critic, seed=seed, device="cpu", precision=precision)
    return TorchBackend().build_trainer(setup)


@pytest.fixture
def float16_on_cpu(monkeypatch):
    monkeypatch.setattr(gankit.trainer, "check_precision", lambda precision, device: None)


def test_float16_is_refused_on_the_cpu_in_one_line():
    with pytest.raises(ConfigError, match="precision float16 needs a CUDA GPU, the trainer runs on cpu"):
        make("float16")


def test_float16_step_scales_the_losses_and_keeps_float32_weights(float16_on_cpu):
    t = make("float16", n_critic=2)
    assert set(t.precision.scalers) == {"generator", "discriminator"}
    results = [t.train_step(REAL[2 * i: 2 * i + 2]) for i in range(3)]
    assert all(r.is_finite() for r in results)
    assert all(v.dtype == np.float32 for v in t.state_dict().values())
    state = t.rng_state()  # the scales travel with the random state: 6 good D steps, 3 G steps
    np.testing.assert_array_equal(state["loss_scale.discriminator"], [2.0**16, 6])
    np.testing.assert_array_equal(state["loss_scale.generator"], [2.0**16, 3])
    assert "loss_scale.generator" not in make("bfloat16").rng_state()  # only float16 scales its loss


def test_float16_overflow_skips_the_step_and_halves_the_scale(float16_on_cpu):
    t = make("float16")
    t.precision.scalers["discriminator"].load_state_dict(
        {**t.precision.scalers["discriminator"].state_dict(), "scale": 2.0**60})  # float16 gradients overflow
    before = t.parameters_of("discriminator")
    t.discriminator_step(REAL[0])
    for k, v in t.parameters_of("discriminator").items():
        np.testing.assert_array_equal(v, before[k])
    assert t.rng_state()["loss_scale.discriminator"][0] == 2.0**59
    assert int(t.optimizer_state()["d_optimizer.step"]) == 0  # a skipped step is not saved as one
    t.discriminator_step(REAL[1])  # at 2**59 it still overflows; it backs off until it does not
    t.precision.scalers["discriminator"].load_state_dict(
        {**t.precision.scalers["discriminator"].state_dict(), "scale": 2.0**10})
    t.discriminator_step(REAL[2])
    assert int(t.optimizer_state()["d_optimizer.step"]) == 1


def test_float16_run_resumes_exactly_with_its_loss_scales(float16_on_cpu):
    straight, first = make("float16"), make("float16")
    for t in (straight, first):
        t.precision.scalers["generator"].load_state_dict(
            {**t.precision.scalers["generator"].state_dict(), "scale": 2.0**40})
    for i in range(2):
        straight.train_step(REAL[i])
        first.train_step(REAL[i])
    resumed = make("float16", seed=9)
    resumed.load_state_dict(first.state_dict())
    resumed.load_optimizer_state(first.optimizer_state())
    resumed.load_rng_state(first.rng_state())
    resumed.step_count = first.step_count
    np.testing.assert_array_equal(resumed.rng_state()["loss_scale.generator"], first.rng_state()["loss_scale.generator"])
    for t in (straight, resumed):
        for i in range(2, 4):
            t.train_step(REAL[i])
    for k, v in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[k], v, err_msg=k)


def test_autocast_computes_in_the_precisions_dtype():
    for precision, dtype in [("bfloat16", torch.bfloat16), ("float16", torch.float16), ("float32", torch.float32)]:
        with Precision(precision, torch.device("cpu"), ("generator",)).autocast():
            assert torch.nn.functional.linear(torch.ones(2, 3), torch.ones(4, 3)).dtype == dtype


def test_mixed_precision_on_mps_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="mixed precision is not supported on mps"):
        Precision("bfloat16", torch.device("mps"), ("generator", "discriminator"))
    assert Precision("float32", torch.device("mps"), ("generator",)).scalers == {}


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_a_loss_scaled_update_equals_the_plain_one(name):
    # Scales are powers of two: scaling, then unscaling before clipping, changes no bit.
    settings = OptimizerSettings(name, 0.1, momentum=0.5 if name == "sgd" else 0.0, clip_grad_norm=0.05,
                                 clip_weights=0.3)
    x = torch.linspace(-1, 1, 12).reshape(4, 3)
    updated = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)
        params = list(net.parameters())
        opt = build_optimizer(params, settings)
        for _ in range(3):
            opt.zero_grad()
            backward_and_step(opt, (net(x) ** 2).mean() * 40, params, settings, scaler)
        updated.append([p.detach().clone() for p in params])
    for a, b in zip(*updated):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert max(float(p.abs().max()) for p in updated[0]) == np.float32(0.3)  # weight clipping bound


def test_a_random_state_of_another_size_is_one_checkpoint_error():
    t = make()
    good = t.rng_state()
    assert set(good) == {"noise", "sample_noise", "torch_global"}
    with pytest.raises(CheckpointError, match="the random state cannot be restored"):
        t.load_rng_state({**good, "noise": np.zeros(3, np.uint8)})
    with pytest.raises(CheckpointError, match="the random state cannot be restored: 'sample_noise'"):
        t.load_rng_state({k: v for k, v in good.items() if k != "sample_noise"})
    t.load_rng_state(good)
    a = t.sample(3)
    t.load_rng_state(good)
    np.testing.assert_array_equal(t.sample(3), a)  # the sampling stream is restored too
