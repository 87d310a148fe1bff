"""Device resolution and the plugin's registration."""

import subprocess
import sys
import warnings

import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

import gankit  # noqa: E402
from gankit_torch.device import device_name, resolve_device  # noqa: E402
from gankit_torch.streams import make_generator  # noqa: E402

MPS = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def test_cpu_and_auto_resolve_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_device("cpu") == torch.device("cpu")
        auto = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else "mps" if MPS else "cpu"
    assert auto.type == expected


@pytest.mark.parametrize("requested", ["cuda:99", "gpu:99"])
def test_unavailable_cuda_index_falls_back_to_cpu_with_one_line(requested):
    with pytest.warns(RuntimeWarning, match=f"device '{requested}' was requested but .* falling back to cpu") as rec:
        assert resolve_device(requested) == torch.device("cpu")
    assert len(rec) == 1 and "\n" not in str(rec[0].message)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("requested", ["cuda", "gpu", "cuda:0"])
def test_cuda_without_cuda_falls_back(requested):
    with pytest.warns(RuntimeWarning, match="CUDA.*not available; falling back to cpu"):
        assert resolve_device(requested).type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_is_an_alias_of_cuda():
    assert resolve_device("gpu") == resolve_device("cuda") and resolve_device("gpu:0") == torch.device("cuda", 0)


@pytest.mark.skipif(MPS, reason="this machine has MPS")
def test_mps_without_mps_falls_back():
    with pytest.warns(RuntimeWarning, match="'mps' was requested but MPS is not available"):
        assert resolve_device("mps").type == "cpu"


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:1"])
def test_unknown_device_is_a_config_error(bad):
    with pytest.raises(gankit.ConfigError, match="unknown device"):
        resolve_device(bad)


def test_generator_is_seeded_on_its_device():
    a, b = make_generator(torch.device("cpu"), 3), make_generator(torch.device("cpu"), 3)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))


def test_trainer_on_unavailable_device_runs_on_cpu():
    from gankit import Dense, Loss, LossMeta, NetSpec, OptimizerSettings, TrainSetup
    from gankit_torch.step import TorchTrainer

    class NonSaturating(Loss):
        meta = LossMeta(family="minimax", saturating=False, properties=(), formula="", paper="")

        def discriminator(self, ops, real_logits, fake_logits):
            return ops.mean(ops.softplus(-real_logits)) + ops.mean(ops.softplus(fake_logits))

        def generator(self, ops, fake_logits, real_logits=None):
            return ops.mean(ops.softplus(-fake_logits))

    g = NetSpec(input_shape=(2,), layers=[Dense(units=2)])
    d = NetSpec(input_shape=(2,), layers=[Dense(units=1)])
    setup = TrainSetup(generator=g, discriminator=d, loss=NonSaturating(), regularizers={},
                       g_optimizer=OptimizerSettings("sgd", 0.1), d_optimizer=OptimizerSettings("sgd", 0.1),
                       latent_dim=2, batch_size=4, device="cuda:99")
    with pytest.warns(RuntimeWarning, match="falling back to cpu"):
        t = TorchTrainer(setup)
    assert t.device == "cpu" and t.train_step(torch.ones(1, 4, 2).numpy()).is_finite()


def test_importing_the_plugin_does_not_import_torch():
    code = ("import sys, gankit_torch, gankit_torch.plugin as p; "
            "recs = p.gankit_register_backends(); "
            "assert 'torch' not in sys.modules, 'torch was imported'; "
            "print(recs[0].name, recs[0].requires, recs[0].extra)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["torch", "('torch',)", "torch"]


def test_registry_builds_the_torch_backend():
    import gankit_torch.plugin

    backend = gankit.Registry.from_plugins([gankit_torch.plugin]).backend("torch")
    assert backend.name == "torch" and isinstance(backend, gankit.Backend)


def test_device_name_is_the_neutral_name_the_other_backends_report():
    assert device_name(torch.device("cpu")) == "cpu"
    assert device_name(torch.device("cuda", 1)) == "cuda:1"
    assert device_name(torch.device("mps")) == "mps"
