"""Checks every architecture must pass: shapes, parameter counts, training, checkpoints,
one function everywhere.

An architecture is built for both roles at the first data shape its factory accepts
(or the one its record's ``metadata["conformance"]`` names), then each backend builds
a trainer from the two specs: its outputs have the right shapes, a training step moves
both networks, and a checkpoint written on the backend loads back exactly. Given the
same canonical weights, every backend must compute the same generator and
discriminator outputs to float32 tolerance. A native architecture (a plugin's own
model for one backend) runs the checks on that backend; the cross-backend ones do not
apply to it (see :func:`gankit.conformance.core.single_backend`).
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from gankit import checkpoint, native
from gankit.conformance.core import check, fail, require
from gankit.conformance.numerics import fmt
from gankit.conformance.training import build
from gankit.initializers import initial_weights

#: Data shapes tried in order when the record does not name one: toy points first,
#: then small images (channels first).
CANDIDATE_SHAPES = ((2,), (1, 28, 28), (3, 32, 32), (1, 32, 32), (3, 64, 64))
LATENT_DIM = 16
N = 4
#: The training batch of the architecture checks. Small: a step of a full-size network
#: (SNGAN's ResNet at 32x32) costs in proportion to it, and moving every parameter group
#: needs no more than a few samples (batch norm needs two).
BATCH = 4


def build_specs(record, params, hints: dict | None = None):
    """``(generator_spec, discriminator_spec, data_shape, latent_dim)`` for an architecture.

    ``hints`` (``metadata["conformance"]``) may give ``data_shape`` and ``latent_dim``.
    Raises ValueError naming every shape tried when none works.
    """
    hints = hints or {}
    latent = int(hints.get("latent_dim", LATENT_DIM))
    shapes = [tuple(hints["data_shape"])] if "data_shape" in hints else list(CANDIDATE_SHAPES)
    roles = getattr(record, "roles", ("generator", "discriminator"))
    errors = []
    for shape in shapes:
        try:
            g = record.factory(params, role="generator", input_shape=(latent,), output_shape=shape) \
                if "generator" in roles else None
            d = record.factory(params, role="discriminator", input_shape=shape, output_shape=(1,)) \
                if "discriminator" in roles else None
        except Exception as exc:
            errors.append(f"{shape}: {type(exc).__name__}: {exc}")
            continue
        return g, d, shape, latent
    raise ValueError("its factory accepted none of the data shapes tried (" + "; ".join(errors)[:600] + ")")


def _trainer(ctx, handle):
    """One trainer per (architecture, backend), cached for the run."""
    s = ctx.subject
    key = ("architecture", s.label, handle.name)
    cache = ctx.suite.cache
    if key not in cache:
        try:
            cache[key] = _build(handle, s)
        except Exception as exc:
            cache[key] = exc
    if isinstance(cache[key], Exception):
        exc = cache[key]
        fail(f"{handle.name} could not build the architecture: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}")
    return cache[key]


def _build(handle, s, seed: int = 0):
    return build(handle, generator=s.generator, discriminator=s.discriminator, latent_dim=s.latent_dim,
                 penalty=False, seed=seed, batch_size=BATCH)


def _labels(s, n: int) -> np.ndarray | None:
    """Class labels for a class-conditional architecture (None otherwise)."""
    classes = [spec.num_classes for spec in (s.generator, s.discriminator) if spec.conditional]
    return (np.arange(n) % classes[0]).astype(np.int64) if classes else None


def _train_step(ctx, t, seed: int = 11):
    """One training step of the shared trainer ``t``, remembered for the run."""
    s = ctx.subject
    real = np.random.default_rng(seed).normal(size=(1, BATCH, *s.data_shape)).astype(np.float32)
    labels = _labels(s, BATCH)
    result = t.train_step(real) if labels is None else t.train_step(real, labels[None])
    ctx.suite.cache.setdefault("architecture-stepped", set()).add((s.label, ctx.backend.name))
    return result


def _weights(s, seed: int = 1) -> dict[str, np.ndarray]:
    """Random canonical weights, with non-trivial batch-norm statistics."""
    weights = initial_weights(s.generator, s.discriminator, "default", seed)
    rng = np.random.default_rng(seed)
    for key, value in weights.items():
        if key.endswith("running_var"):
            weights[key] = rng.uniform(0.5, 2.0, value.shape).astype(np.float32)
        elif key.endswith("running_mean"):
            weights[key] = rng.normal(0.0, 0.2, value.shape).astype(np.float32)
    return weights


def _inputs(s):
    rng = np.random.default_rng(7)
    z = rng.normal(size=(N, s.latent_dim)).astype(np.float32)
    x = rng.normal(size=(N, *s.data_shape)).astype(np.float32)
    return z, x


@check("architecture.shapes_dtypes", "generator outputs (n, *data_shape) and the discriminator (n,), float32, finite")
def shapes_dtypes(ctx):
    s = ctx.subject
    require(tuple(s.generator.output_shape) == tuple(s.data_shape),
            f"the generator spec outputs {s.generator.output_shape}, the data shape is {s.data_shape}")
    require(math.prod(s.discriminator.output_shape) == 1,
            f"the discriminator spec outputs {s.discriminator.output_shape}, not one logit")
    t = _trainer(ctx, ctx.backend)
    z, x = _inputs(s)
    fake = np.asarray(t.generate(z))
    logits = np.asarray(t.discriminate(x))
    for what, got, shape in (("generate", fake, (N, *s.data_shape)), ("discriminate", logits, (N,))):
        require(got.shape == shape, f"{what} returned shape {got.shape}, expected {shape}")
        require(got.dtype == np.float32, f"{what} returned dtype {got.dtype}, expected float32")
        require(bool(np.all(np.isfinite(got))), f"{what} returned non-finite values {fmt(got)}")
    return f"data {s.data_shape}, latent {s.latent_dim}"


def _layout(ctx, t) -> dict[str, tuple]:
    s = ctx.subject
    state = t.state_dict()
    got = {k: tuple(np.shape(v)) for k, v in state.items()}
    want = {}
    for role, spec in (("generator", s.generator), ("discriminator", s.discriminator)):
        want.update({f"{role}.{k}": tuple(v) for k, v in {**spec.parameter_shapes(), **spec.buffer_shapes()}.items()})
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    require(not missing and not extra,
            f"state_dict on {ctx.backend.name} misses {missing[:6]} and has unexpected {extra[:6]}")
    wrong = [f"{k}: {got[k]} != {want[k]}" for k in want if got[k] != want[k]]
    require(not wrong, f"state_dict shapes on {ctx.backend.name} differ from the spec: {wrong[:6]}")
    return got


@check("architecture.parameter_count", "the backend holds exactly the spec's parameters, by canonical name and shape")
def parameter_count(ctx):
    s = ctx.subject
    _layout(ctx, _trainer(ctx, ctx.backend))
    return f"{s.generator.parameter_count()} + {s.discriminator.parameter_count()} parameters"


@check("architecture.trains", "a training step reports finite losses and moves both G's and D's parameters")
def trains(ctx):
    s = ctx.subject
    # The trainer the other checks share (built once per backend: a TensorFlow build
    # traces its step); checkpoint_round_trip then saves the weights this step made.
    t = _trainer(ctx, ctx.backend)
    before = t.state_dict()
    result = _train_step(ctx, t)
    require(result.is_finite(), f"the training step reported non-finite scalars {result.scalars()}")
    after = t.state_dict()
    moved = {}
    for role, spec in (("generator", s.generator), ("discriminator", s.discriminator)):
        names = [f"{role}.{k}" for k in spec.parameter_shapes()]
        moved[role] = [k for k in names if not np.array_equal(before[k], after[k])]
        require(bool(moved[role]), f"a training step changed none of the {len(names)} {role} parameters")
    return (f"d_loss {result.d_loss:.4g}, g_loss {result.g_loss:.4g}; moved {len(moved['generator'])} G and "
            f"{len(moved['discriminator'])} D parameters")


@check("architecture.checkpoint_round_trip", "a checkpoint written on the backend loads back there exactly: "
       "the same weights, the same G and D outputs")
def checkpoint_round_trip(ctx):
    s = ctx.subject
    handle = ctx.backend
    t = _trainer(ctx, handle)
    if (s.label, handle.name) not in ctx.suite.cache.get("architecture-stepped", ()):
        _train_step(ctx, t)  # weights (and batch-norm statistics) no initialisation would give
    saved = t.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        path = checkpoint.save(Path(tmp) / "checkpoint", saved, step=1, backend=handle.name, versions={},
                               generator=s.generator, discriminator=s.discriminator, config={})
        manifest, weights = checkpoint.load(path)
    # Rebuilt from the manifest's specs alone (a native one re-bound to its installed plugin),
    # from another seed: only loading the weights can make it equal.
    g, d = (native.bind(spec, s.registry, handle.name) for spec in (manifest.generator, manifest.discriminator))
    loaded = build(handle, generator=g, discriminator=d, latent_dim=s.latent_dim, penalty=False, seed=1,
                   batch_size=BATCH)
    loaded.load_state_dict(weights)
    state = loaded.state_dict()
    require(set(state) == set(saved), f"the reloaded trainer holds {sorted(set(state) ^ set(saved))[:6]} "
                                      "where the saved one did not, or the reverse")
    differ = sorted(k for k in saved if not np.array_equal(saved[k], state[k]))
    require(not differ, f"weights changed in the round trip: {differ[:6]}")
    z, x = _inputs(s)
    for what, a, b in (("generate(z)", t.generate(z), loaded.generate(z)),
                       ("discriminate(x)", t.discriminate(x), loaded.discriminate(x))):
        a, b = np.asarray(a), np.asarray(b)
        require(np.array_equal(a, b), f"{what} differs after the round trip by {float(np.max(np.abs(a - b))):.3g}")
    return f"{len(saved)} tensors"


@check("architecture.parameter_count_agrees", "every backend has the same parameter count and layout", across=True)
def parameter_count_agrees(ctx):
    counts = {}
    for handle in ctx.backends:
        layout = _layout(_Bound(ctx, handle), _trainer(ctx, handle))
        counts[handle.name] = sum(math.prod(v) for v in layout.values())
    require(len(set(counts.values())) == 1, f"parameter + buffer counts differ: {counts}")
    return f"{next(iter(counts.values()))} values on each"


@check("architecture.same_function", "given the same weights, every backend computes the same G and D "
       "(float32 tolerance)", across=True)
def same_function(ctx):
    s = ctx.subject
    weights = _weights(s)
    z, x = _inputs(s)
    outputs = {}
    for handle in ctx.backends:
        t = _trainer(ctx, handle)
        t.load_state_dict(weights)
        fake = np.asarray(t.generate(z), np.float64)
        outputs[handle.name] = (fake, np.asarray(t.discriminate(x), np.float64),
                                np.asarray(t.discriminate(fake.astype(np.float32)), np.float64))
    first, *others = outputs
    worst = 0.0
    for other in others:
        for what, a, b in zip(("generate(z)", "discriminate(x)", "discriminate(generate(z))"),
                              outputs[first], outputs[other]):
            scale = max(1.0, float(np.max(np.abs(a))))
            diff = float(np.max(np.abs(a - b)))
            worst = max(worst, diff / scale)
            if diff > 1e-4 * scale:
                fail(f"{what} differs between {first} and {other} by {diff:.3g} (tolerance {1e-4 * scale:.3g}): "
                     f"{fmt(a)} vs {fmt(b)}")
    return f"max relative difference {worst:.2g}"


class _Bound:
    """A context whose single backend is ``handle`` (for helpers that read ctx.backend)."""

    def __init__(self, ctx, handle):
        self.subject, self.suite, self.backend = ctx.subject, ctx.suite, handle
