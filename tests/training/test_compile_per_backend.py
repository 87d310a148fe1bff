"""``training.compile`` as a list of backend names: the step compiles on those backends only."""

from gankit.assembly import build
from gankit.config import load_config


def _setup_compile(backend, value):
    cfg = load_config(preset="ring8", environ={}, overrides=[f"backend={backend}", f"training.compile={value}",
                                                             "training.threads=1"])
    return build(cfg).trainer.setup.compile


def test_compile_reaches_the_named_backends_only(backend_name):
    if backend_name != "torch":  # torch.compile compiles as the trainer is built: minutes on a CPU
        assert _setup_compile(backend_name, f'["{backend_name}"]') is True
    others = [b for b in ("torch", "tensorflow", "jax") if b != backend_name]
    assert _setup_compile(backend_name, f'["{others[0]}", "{others[1]}"]') is False
    assert _setup_compile(backend_name, "[]") is False
