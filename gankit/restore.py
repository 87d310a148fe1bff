"""Load a checkpoint for inference: rebuild its GAN on any backend, and sample from it.

A checkpoint holds the neutral specs and canonical weights, so a generator trained on
one backend loads into any other::

    gan = gankit.load_checkpoint("runs/mnist-torch-…", backend="tensorflow")
    images = gan.sample(64, seed=0, truncation=1.5)

Loading parses JSON and safetensors only (:func:`gankit.checkpoint.load`); the
networks are rebuilt from the spec's layer vocabulary, never from code in the file (a
native architecture's by the installed plugin's builder, on its own backend only).
Only the weights are loaded: continuing a run (optimizer and random state, the position
in the data) is :func:`gankit.training.resume_from`, through ``gankit train --resume``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from gankit import checkpoint, native
from gankit.errors import CheckpointError, ConfigError, PluginError
from gankit.nets import NetSpec, class_labels, conditional_classes
from gankit.plugins import Registry, call_factory, get_registry
from gankit.protocol import Trainer, TrainSetup


def latents(n: int, dim: int, distribution: str = "normal", seed: int = 0,
            truncation: float | None = None) -> np.ndarray:
    """``n`` latent vectors (float32), drawn in numpy so that every backend gets the same ones.

    ``truncation`` (the truncation trick, Brock et al. 2019): every coordinate whose
    absolute value exceeds ``truncation`` is drawn again until none does, which trades
    variety for fidelity. For uniform latents on [-1, 1] a truncation below 1 narrows
    the range the same way; at or above 1 it changes nothing.
    """
    if truncation is not None and truncation <= 0:
        raise ConfigError(f"truncation must be positive, got {truncation}", hint="e.g. --truncation 1.5")
    rng = np.random.default_rng([seed, 0x5A4D])

    def draw(size):
        if distribution == "uniform":
            return rng.uniform(-1.0, 1.0, size)
        return rng.standard_normal(size)

    z = draw((int(n), int(dim)))
    if truncation is not None:
        bad = np.abs(z) > truncation
        for _ in range(MAX_REDRAWS):
            if not bad.any():
                break
            z[bad] = draw(int(bad.sum()))
            bad = np.abs(z) > truncation
        if bad.any():  # a tiny truncation: draw the rest from the truncated law directly
            z[bad] = _truncated(rng, int(bad.sum()), distribution, truncation)
    return z.astype(np.float32)


#: Rounds of redrawing before the last coordinates are drawn by inverse CDF (at any
#: truncation above 0.2 the redraws finish long before: 100 rounds leave a coordinate
#: out with probability below 0.85^100).
MAX_REDRAWS = 100


def _truncated(rng: np.random.Generator, size: int, distribution: str, t: float) -> np.ndarray:
    """``size`` draws of the latent law conditioned on ``|z| <= t``, by inverse CDF (no
    rejection loop, so a truncation of 1e-30 cannot hang)."""
    if distribution == "uniform":
        return rng.uniform(-min(t, 1.0), min(t, 1.0), size)
    from scipy.special import ndtr, ndtri

    lo = ndtr(-t)  # P(z < -t); the truncated normal's CDF runs from lo to 1 - lo
    return np.clip(ndtri(lo + rng.uniform(0.0, 1.0, size) * (1.0 - 2.0 * lo)), -t, t)


@dataclass
class LoadedGAN:
    """A checkpoint rebuilt on a backend for inference: its trainer (both networks with
    the saved weights, ready to sample and evaluate; fresh optimizer state), the
    manifest, and the specs."""

    trainer: Trainer
    manifest: checkpoint.Manifest
    backend: str
    generator: NetSpec
    discriminator: NetSpec
    config: dict[str, Any]

    @property
    def latent_dim(self) -> int:
        return int(self.generator.input_shape[0])

    @property
    def latent_distribution(self) -> str:
        return str(self.config.get("latent", {}).get("distribution", "normal"))

    @property
    def num_classes(self) -> int | None:
        """Classes of a class-conditional generator (None when unconditional)."""
        return self.generator.num_classes if self.generator.conditional else None

    def latents(self, n: int, seed: int = 0, truncation: float | None = None) -> np.ndarray:
        """The latents :meth:`sample` uses (see :func:`latents`)."""
        return latents(n, self.latent_dim, self.latent_distribution, seed, truncation)

    def generate(self, z, labels=None) -> np.ndarray:
        """Generator outputs (eval mode; the EMA generator when the checkpoint has one)."""
        return np.asarray(self.trainer.generate(z, labels) if self.num_classes else self.trainer.generate(z))

    @property
    def sampling(self) -> dict[str, Any]:
        """The checkpoint config's ``sampling`` table (rejection, drs_percentile)."""
        from gankit.config import SamplingConfig

        return SamplingConfig.model_validate(self.config.get("sampling", {})).model_dump()

    def sample(self, n: int, seed: int = 0, truncation: float | None = None, labels=None,
               rejection: str | None = None, percentile: float | None = None) -> np.ndarray:
        """``n`` samples from numpy latents: the same seed gives the same samples on every
        backend. A class-conditional generator takes ``labels`` (default: the classes in turn).

        ``rejection="drs"`` keeps only samples that pass discriminator rejection sampling
        (:mod:`gankit.rejection`, at ``percentile``); the default for both is the
        checkpoint config's ``sampling`` table.
        """
        from gankit.budget import check_samples

        check_samples(int(n), self.generator, "--num-samples")
        chosen = self.sampling
        rejection = rejection or chosen["rejection"]
        if rejection == "none":
            y = class_labels(labels, (int(n),), self.num_classes)
            return self.generate(self.latents(n, seed, truncation), y)
        if rejection != "drs":
            raise ConfigError(f"unknown rejection {rejection!r}", hint="use 'none' or 'drs'")
        from gankit.rejection import rejection_sample

        cycle = None  # a conditional generator's candidates take these labels in turn
        if self.num_classes:
            given = None if labels is None else np.asarray(labels).reshape(-1)
            cycle = np.arange(self.num_classes) if given is None else class_labels(given, given.shape, self.num_classes)

        def draw(k: int, rng: np.random.Generator) -> np.ndarray:
            return self.latents(k, int(rng.integers(2**31)), truncation)

        result = rejection_sample(
            self.generate,
            lambda x, y: self.trainer.discriminate(x) if y is None else self.trainer.discriminate(x, y),
            draw, int(n), percentile=chosen["drs_percentile"] if percentile is None else percentile,
            seed=seed, label_cycle=cycle)
        return result.samples


def _plugin(registry: Registry, kind: str, choice: dict[str, Any] | None, default: str, where: str):
    choice = choice or {"name": default}
    name = choice.get("name", default)
    try:
        entry = registry.get(kind, name)
    except PluginError as exc:  # a plugin that is not installed here
        raise CheckpointError(f"{where}: its {kind} {name!r} cannot be built here: {exc.message}",
                              hint=f"install the plugin that provides the {kind}") from None
    try:
        params = entry.record.params.model_validate(choice.get("params", {}))
    except ValidationError as exc:
        raise CheckpointError(f"{where}: its {kind} {name!r} has parameters this version rejects: "
                              f"{exc.errors()[0]['msg']}") from None
    # A third-party factory that fails is named with its distribution (a PluginError); a
    # built-in one that fails is a bug, reported as such.
    return call_factory(entry, kind, params)


def installed_backends(registry: Registry) -> list[str]:
    """The registered backends whose framework is installed here."""
    return [n for n in registry.names("backend") if registry.backend_available(n)]


def check_consistent(manifest: checkpoint.Manifest, cfg, where: str) -> None:
    """Refuse a manifest whose config contradicts the manifest itself (a hand-edited or
    damaged file): the backend that wrote the checkpoint, the generator's latent size, and
    whether the weights hold an EMA generator (each where the config sets it: a config
    gankit wrote sets all three). The manifest's own fields are what loading uses (its
    backend by default, its specs, its tensors), so a config that disagrees would make one
    command load what another refuses."""
    raw = manifest.config
    fix = "use the checkpoint's manifest as gankit wrote it, or an earlier checkpoint of the run"
    if "backend" in raw and raw["backend"] != manifest.backend:
        raise CheckpointError(f"{where}: its manifest names the backend {manifest.backend!r} but its config "
                              f"{raw['backend']!r}; the manifest was edited or is corrupt", hint=fix)
    dim = int(manifest.generator.input_shape[0])
    if "dim" in (raw.get("latent") or {}) and cfg.latent.dim != dim:
        raise CheckpointError(f"{where}: its config's latent.dim is {cfg.latent.dim} but its generator takes latents of "
                              f"size {dim}; the manifest was edited or is corrupt", hint=fix)
    ema = bool(getattr(cfg.training, "ema_decay", 0))
    if "ema_decay" in (raw.get("training") or {}) and ema != manifest.ema:
        have = "hold an" if manifest.ema else "hold no"
        raise CheckpointError(f"{where}: its weights {have} EMA generator but its config's training.ema_decay is "
                              f"{cfg.training.ema_decay}; the manifest was edited or is corrupt", hint=fix)


def load_checkpoint(path: str | os.PathLike, backend: str | None = None, *, device: str = "auto",
                    registry: Registry | None = None) -> LoadedGAN:
    """Rebuild the GAN of a checkpoint (a run directory, a manifest or a weights file) on
    ``backend`` (default: the backend that wrote it).

    The networks come from the manifest's specs and the weights are loaded as saved, so
    any backend computes the same generator. The loss and regularizers are rebuilt from
    the manifest's config (a trainer needs them); the dataset is not loaded.
    """
    manifest, weights = checkpoint.load(path)
    return rebuild(manifest, weights, backend=backend, device=device, registry=registry,
                   where=f"checkpoint {str(path)!r}")


def rebuild(manifest: checkpoint.Manifest, weights: dict[str, np.ndarray], backend: str | None = None, *,
            device: str = "auto", registry: Registry | None = None, where: str = "the checkpoint") -> LoadedGAN:
    """:func:`load_checkpoint` of a checkpoint already read (and verified) by
    :func:`gankit.checkpoint.load`: the networks are the manifest's specs, never ones
    rebuilt from its config, and the backend is ``backend`` or else the manifest's. A
    backend or native architecture that is not installed here, and a manifest whose config
    contradicts it (:func:`check_consistent`), are refused in one line naming ``where``
    (the checkpoint). ``gankit sample``, ``evaluate`` and ``export`` all load through here."""
    from gankit.config import ExperimentConfig

    reg = registry or get_registry()
    raw = dict(manifest.config)
    name = backend or manifest.backend
    try:
        cfg = ExperimentConfig.model_validate({**raw, "backend": name})
    except ValidationError as exc:
        first = exc.errors()[0]
        at = ".".join(str(x) for x in first["loc"])
        raise CheckpointError(f"{where}: its config is invalid at {at}: {first['msg']}",
                              hint="it was written by an incompatible gankit version") from None
    check_consistent(manifest, cfg, where)
    installed = ", ".join(installed_backends(reg)) or "none"
    if backend and not reg.has("backend", backend):
        raise CheckpointError(f"backend {backend!r} is not installed (installed: {installed})",
                              hint="see `gankit plugins --kind backend`")
    if not reg.has("backend", name):
        raise CheckpointError(f"{where} names the backend {name!r}, which is not installed here; installed: "
                              f"{installed}", hint="load it with --backend NAME")
    g, d = (native.bind(spec, reg, name, where) for spec in (manifest.generator, manifest.discriminator))
    try:
        conditional_classes(g, d)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    be = reg.backend(name)
    setup = TrainSetup(
        generator=g, discriminator=d,
        loss=_plugin(reg, "loss", raw.get("loss"), "non_saturating", where),
        regularizers={r["name"]: _plugin(reg, "regularizer", r, r["name"], where) for r in raw.get("regularizers", [])},
        g_optimizer=cfg.optimizers.generator.settings(), d_optimizer=cfg.optimizers.discriminator.settings(),
        latent_dim=int(g.input_shape[0]), latent_distribution=cfg.latent.distribution,
        batch_size=cfg.training.batch_size, n_critic=cfg.training.n_critic, seed=cfg.seed,
        device=device, initial_weights=dict(weights),
        **_engine_settings(cfg),
    )
    trainer = be.build_trainer(setup)
    trainer.load_state_dict(weights)
    try:
        trainer.step_count = manifest.step
    except AttributeError:
        pass
    return LoadedGAN(trainer=trainer, manifest=manifest, backend=name, generator=g, discriminator=d, config=raw)


def _engine_settings(cfg) -> dict[str, Any]:
    """TrainSetup fields of the training engine that the checkpoint's config sets (an EMA
    generator must exist to receive the checkpoint's ``generator_ema.*`` weights)."""
    t = cfg.training
    out = {}
    for field, value in (("ema_decay", getattr(t, "ema_decay", None)), ("ema_start", getattr(t, "ema_start", None)),
                         ("total_steps", getattr(t, "steps", None))):
        if value is not None and field in TrainSetup.__dataclass_fields__:
            out[field] = value
    return out
