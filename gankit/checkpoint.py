"""The checkpoint format: safetensors weights + a JSON manifest. No pickle anywhere.

A checkpoint is two files side by side::

    checkpoint.safetensors   weights in the canonical layout ("generator.0.weight", ...)
    checkpoint.json          manifest: format, step, backend, versions, specs, config, sha256

Writes are atomic (temp file + rename), so an interrupted write leaves the previous
checkpoint readable. Loading parses JSON and safetensors only; it never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError

from gankit.errors import CheckpointError
from gankit.nets import NetSpec
from gankit.protocol import StrictModel

FORMAT = "gankit-checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
MANIFEST_SUFFIX = ".json"


class Manifest(StrictModel):
    """The JSON half of a checkpoint."""

    format: str = FORMAT
    """Format identifier and version."""
    step: int = Field(ge=0)
    """Completed generator updates."""
    backend: str
    """Backend that wrote the checkpoint."""
    versions: dict[str, str]
    """gankit and framework versions."""
    generator: NetSpec
    """Generator spec."""
    discriminator: NetSpec
    """Discriminator spec."""
    config: dict[str, Any]
    """The resolved experiment config."""
    tensors: dict[str, list[int]]
    """Every tensor's name and shape."""
    sha256: str
    """Hash of the weights file."""


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def paths(base: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, manifest) paths for a checkpoint base path or either file."""
    p = Path(base)
    if p.suffix in (WEIGHTS_SUFFIX, MANIFEST_SUFFIX):
        p = p.with_suffix("")
    return p.with_suffix(WEIGHTS_SUFFIX), p.with_suffix(MANIFEST_SUFFIX)


def save(
    base: str | os.PathLike,
    weights: dict[str, np.ndarray],
    *,
    step: int,
    backend: str,
    versions: dict[str, str],
    generator: NetSpec,
    discriminator: NetSpec,
    config: dict[str, Any],
) -> Path:
    """Write a checkpoint; returns the manifest path. The manifest is written last,
    so a manifest always describes a complete weights file."""
    from safetensors.numpy import save as st_save

    weights_path, manifest_path = paths(base)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())}
    blob = st_save(arrays, metadata={"format": FORMAT})
    manifest = Manifest(
        step=step, backend=backend, versions=versions, generator=generator, discriminator=discriminator,
        config=config, tensors={k: list(v.shape) for k, v in arrays.items()},
        sha256=hashlib.sha256(blob).hexdigest(),
    )
    _atomic_write(weights_path, blob)
    _atomic_write(manifest_path, manifest.model_dump_json(indent=2).encode())
    return manifest_path


def find(path: str | os.PathLike) -> Path:
    """The manifest of a checkpoint given a run directory, a manifest, or a weights file."""
    p = Path(path)
    if p.is_dir():
        candidate = p / f"checkpoint{MANIFEST_SUFFIX}"
        if not candidate.is_file():
            raise CheckpointError(f"run directory {str(p)!r} holds no checkpoint.json", hint="train to the end, or point at a checkpoint file")
        return candidate
    return paths(p)[1]


def load(path: str | os.PathLike) -> tuple[Manifest, dict[str, np.ndarray]]:
    """Read and verify a checkpoint: manifest schema, hash, tensor names and shapes."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    manifest_path = find(path)
    weights_path = paths(manifest_path)[0]
    for p in (manifest_path, weights_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {str(p)!r} is missing", hint="a checkpoint is a .json manifest and a .safetensors file side by side")
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "manifest"
        raise CheckpointError(f"checkpoint manifest {str(manifest_path)!r} is invalid at {where}: {first['msg']}", hint="the file is corrupt or not a gankit checkpoint") from None
    if manifest.format != FORMAT:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} has format {manifest.format!r}; this gankit reads {FORMAT!r}")
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest.sha256:
        raise CheckpointError(f"checkpoint weights {str(weights_path)!r} do not match their manifest (sha256 differs)", hint="the file is truncated or corrupt; use an earlier checkpoint")
    try:
        weights = st_load(blob)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint weights {str(weights_path)!r} cannot be read: {exc}") from None
    got = {k: list(v.shape) for k, v in weights.items()}
    if got != manifest.tensors:
        diff = sorted(set(got) ^ set(manifest.tensors)) or sorted(k for k in got if got[k] != manifest.tensors[k])
        raise CheckpointError(f"checkpoint {str(weights_path)!r}: tensors differ from the manifest ({', '.join(diff[:3])})", hint="the file is corrupt")
    expected = expected_shapes(manifest.generator, manifest.discriminator)
    check_shapes(weights, expected, str(weights_path))
    return manifest, weights


def expected_shapes(generator: NetSpec, discriminator: NetSpec) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for role, spec in (("generator", generator), ("discriminator", discriminator)):
        for name, shape in {**spec.parameter_shapes(), **spec.buffer_shapes()}.items():
            out[f"{role}.{name}"] = tuple(shape)
    return out


def check_shapes(weights: dict[str, np.ndarray], expected: dict[str, tuple[int, ...]], where: str) -> None:
    """One clear line on the first missing, unexpected or mis-shaped tensor."""
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise CheckpointError(f"{where}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)", hint="the checkpoint was written for another architecture")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise CheckpointError(f"{where}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all)", hint="the checkpoint was written for another architecture")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise CheckpointError(f"{where}: tensor {name!r} has shape {tuple(weights[name].shape)}, the model expects {tuple(shape)}", hint="the checkpoint was written for another architecture")
