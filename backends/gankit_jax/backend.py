"""``JaxBackend``: what the ``jax`` backend plugin provides."""

from __future__ import annotations

import os
from pathlib import Path

import jax

from gankit.protocol import ProcessGroup, TrainSetup

from gankit_jax.ops import JaxOps
from gankit_jax.step import JaxTrainer


#: Environment variable naming the directory of XLA's compiled steps ("off": none).
CACHE_ENV = "GANKIT_JAX_CACHE"


def _use_compilation_cache() -> str | None:
    """Keep XLA's compiled programs on disk (jax's persistent compilation cache), unless the
    user configured jax's cache already or set ``GANKIT_JAX_CACHE=off``: compiling a GAN
    step takes XLA seconds on a CPU, loading it again a fraction of one (a trainer with
    the same nets and settings reuses it, within a process and across runs). The
    directory is ``$GANKIT_JAX_CACHE``, else ``$XDG_CACHE_HOME/gankit/jax`` (``~/.cache``)."""
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = os.environ.get(CACHE_ENV, "").strip()
    if path.lower() == "off":
        return None
    if not path:
        path = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gankit" / "jax")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return path


class JaxBackend:
    """The jax implementation of :class:`gankit.Backend` (no ONNX export: optional)."""

    name = "jax"

    def __init__(self):
        self.compilation_cache = _use_compilation_cache()

    def version(self) -> str:
        return str(jax.__version__)

    def ops(self, dtype: str = "float32", seed: int = 0) -> JaxOps:
        """Ops for standalone evaluation (tests, conformance)."""
        return JaxOps(seed=seed, dtype=dtype)

    def build_trainer(self, setup: TrainSetup) -> JaxTrainer:
        return JaxTrainer(setup)

    def distributed(self, mode: str = "auto", device: str = "auto") -> ProcessGroup:
        """One process; data-parallel modes are refused in one line (see :mod:`gankit_jax.distributed`)."""
        from gankit_jax import distributed

        return distributed.init(mode, device)

    def generator_module(self, trainer: JaxTrainer):
        """The trainer's sampling generator as a jax function with its params."""
        from gankit_jax.export import generator_module

        return generator_module(trainer)

    def __repr__(self) -> str:
        return f"JaxBackend(jax {self.version()})"
