"""The checkpoint format: safetensors weights + a JSON manifest. No pickle anywhere.

A checkpoint is two files side by side (three when it can resume training)::

    checkpoint.safetensors        weights in the canonical layout ("generator.0.weight", ...,
                                  and "generator_ema.*" when the run keeps an EMA generator)
    checkpoint.state.safetensors  optimizer slots and random-number state (to resume)
    checkpoint.json               manifest: format, step, backend, versions, specs, config,
                                  sha256 of each file, data position

Writes are atomic (temp file + rename) and the manifest is written last (a manifest being
replaced is deleted first), so an interrupted write leaves the previous checkpoint readable;
:func:`clean_partial` removes what such a write left behind. A run directory keeps its
periodic checkpoints as ``checkpoints/step_NNNNNNNN.*`` (the last N) and the final one as
``checkpoint.*``. Loading parses JSON and safetensors only; it never executes code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError

from gankit.errors import CheckpointError
from gankit.native import AnyNet
from gankit.nets import NetSpec
from gankit.protocol import StrictModel

FORMAT = "gankit-checkpoint/1"
WEIGHTS_SUFFIX = ".safetensors"
MANIFEST_SUFFIX = ".json"
STATE_SUFFIX = ".state.safetensors"
PERIODIC_DIR = "checkpoints"
#: Loading refuses, before reading them, manifests and safetensors headers beyond these sizes.
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_HEADER_BYTES = 64 * 2**20
#: The widest element a checkpoint tensor may have (float64, int64).
MAX_ELEMENT_BYTES = 8
EMA_PREFIX = "generator_ema."


class TrainingState(StrictModel):
    """What a checkpoint needs beyond the weights to resume training exactly."""

    sha256: str
    """Hash of the state file (``<base>.state.safetensors``)."""
    tensors: dict[str, list[int]]
    """Every state tensor's name and shape: ``optimizer.*`` (both optimizers, a format
    every backend reads) and ``rng.*`` (the backend's random streams)."""
    data_batches: int = Field(ge=0)
    """Batches taken from the training data stream so far (resuming skips as many)."""
    rng_backend: str
    """The backend whose random state ``rng.*`` is (it loads only there)."""


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
    generator: AnyNet
    """Generator spec (a NetSpec, or a NativeNet for a native architecture)."""
    discriminator: AnyNet
    """Discriminator spec."""
    config: dict[str, Any]
    """The resolved experiment config."""
    tensors: dict[str, list[int]]
    """Every tensor's name and shape."""
    sha256: str
    """Hash of the weights file."""
    ema: bool = False
    """Whether the weights hold an EMA generator (``generator_ema.*``)."""
    state: TrainingState | None = None
    """Optimizer and random state for resuming (absent: weights only)."""


#: Temporary files of an atomic write are named ``.<final name>.<random>.tmp``.
TEMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a kill at any moment leaves either the old file
    or the new one: a temporary file beside it, flushed to disk, then renamed over it (and
    the rename synced).
    The file gets the mode of every other file of a run (0666 less the umask: 0644 by
    default); a temporary file left by a kill is removed by :func:`clean_partial`."""
    path = Path(path)
    os.replace(_temporary(path, data), path)
    _sync_directory(path.parent)
    return path


def _temporary(path: Path, data: bytes) -> Path:
    """``data`` in a temporary file beside ``path``, flushed to disk; removed again if the
    write fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _sync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a power cut after it keeps the new file); POSIX
    only, where a directory can be opened and synced."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_atomic_write = atomic_write


def _base(base: str | os.PathLike) -> Path:
    p = Path(base)
    if p.name.endswith(STATE_SUFFIX):
        return p.with_name(p.name[: -len(STATE_SUFFIX)])
    if p.suffix in (WEIGHTS_SUFFIX, MANIFEST_SUFFIX):
        return p.with_suffix("")
    return p


def paths(base: str | os.PathLike) -> tuple[Path, Path]:
    """(weights, manifest) paths for a checkpoint base path or either file."""
    p = _base(base)
    return p.with_name(p.name + WEIGHTS_SUFFIX), p.with_name(p.name + MANIFEST_SUFFIX)


def state_path(base: str | os.PathLike) -> Path:
    """The training-state file beside a checkpoint's manifest."""
    p = _base(base)
    return p.with_name(p.name + STATE_SUFFIX)


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
    optimizer_state: dict[str, np.ndarray] | None = None,
    rng_state: dict[str, np.ndarray] | None = None,
    data_batches: int = 0,
) -> Path:
    """Write a checkpoint; returns the manifest path. The manifest is written last,
    so a manifest always describes complete weights (and state) files.

    With ``optimizer_state`` and ``rng_state`` the checkpoint can resume training; their
    arrays keep their dtypes (the weights are stored as float32)."""
    from safetensors.numpy import save as st_save

    weights_path, manifest_path = paths(base)
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sorted(weights.items())}
    blob = st_save(arrays, metadata={"format": FORMAT})
    state = None
    if optimizer_state is not None and rng_state is not None:
        # np.array, not np.ascontiguousarray: that turns 0-d arrays (step counts) into 1-d.
        state_arrays = {**{f"optimizer.{k}": np.array(v, order="C") for k, v in optimizer_state.items()},
                        **{f"rng.{k}": np.array(v, order="C") for k, v in rng_state.items()}}
        state_blob = st_save(dict(sorted(state_arrays.items())), metadata={"format": FORMAT})
        state = TrainingState(sha256=hashlib.sha256(state_blob).hexdigest(),
                              tensors={k: list(v.shape) for k, v in sorted(state_arrays.items())},
                              data_batches=data_batches, rng_backend=backend)
    manifest = Manifest(
        step=step, backend=backend, versions=versions, generator=generator, discriminator=discriminator,
        config=config, tensors={k: list(v.shape) for k, v in arrays.items()},
        sha256=hashlib.sha256(blob).hexdigest(), ema=any(k.startswith(EMA_PREFIX) for k in arrays),
        state=state,
    )
    # Every file goes to disk under a temporary name first: a failed write (a full disk)
    # leaves the old checkpoint whole. Then the old manifest goes, so a kill between the
    # renames never pairs it with new files, and the new manifest comes last.
    files = {weights_path: blob}
    if state is not None:
        files[state_path(base)] = state_blob
    written = {}
    try:
        for path, data in files.items():
            written[path] = _temporary(path, data)
        manifest_path.unlink(missing_ok=True)
        for path in list(written):
            os.replace(written[path], path)
            del written[path]
    except BaseException:
        for tmp in written.values():
            tmp.unlink(missing_ok=True)
        raise
    _atomic_write(manifest_path, manifest.model_dump_json(indent=2).encode())
    return manifest_path


def periodic_base(run_dir: str | os.PathLike, step: int) -> Path:
    """Base path of the periodic checkpoint of ``step`` in a run directory."""
    return Path(run_dir) / PERIODIC_DIR / f"step_{step:08d}"


def periodic(run_dir: str | os.PathLike) -> list[Path]:
    """The manifests of a run's periodic checkpoints, oldest first."""
    folder = Path(run_dir) / PERIODIC_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(f"step_*{MANIFEST_SUFFIX}") if not p.name.startswith("."))


def prune(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` periodic checkpoints; returns the deleted manifests.
    A manifest is deleted first, so a half-pruned checkpoint is never mistaken for a whole one."""
    old = periodic(run_dir)[: -keep] if keep > 0 else periodic(run_dir)
    for manifest in old:
        manifest.unlink(missing_ok=True)
        for p in (paths(manifest)[0], state_path(manifest)):
            p.unlink(missing_ok=True)
    return old


def clean_partial(run_dir: str | os.PathLike) -> list[Path]:
    """Delete what interrupted writes left in a run directory: temporary files
    (``.step_*.safetensors.*``, ``.checkpoint.json.*``, ``.config.json.<hex>.tmp``, ...) and
    weights or state files without their manifest (a write or a prune cut short). Returns
    the deleted paths.
    Call it only while holding the run directory's lock (a live run's writes look alike)."""
    run_dir = Path(run_dir)
    removed = []
    for folder, stem in ((run_dir, r"checkpoint"), (run_dir / PERIODIC_DIR, r"step_\d+")):
        if not folder.is_dir():
            continue
        data_file = re.compile(rf"{stem}(\.state)?\.safetensors")
        # a checkpoint's temporary files (this version's and earlier ones'), and any other
        # file of the run written by atomic_write (.config.json.<hex>.tmp, ...)
        temp_file = re.compile(rf"\.{stem}\..+|\..+\.[0-9a-f]{{8}}{re.escape(TEMP_SUFFIX)}")
        for p in folder.iterdir():
            orphan = data_file.fullmatch(p.name) and not paths(p)[1].is_file()
            if (orphan or temp_file.fullmatch(p.name)) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return sorted(removed)


def latest(run_dir: str | os.PathLike) -> Path | None:
    """The manifest of the newest checkpoint in a run directory: the final one or the
    newest periodic one, whichever has the higher step (None if there is none). Unreadable
    manifests are passed over; when every one is unreadable, the newest of them is
    returned, so that :func:`load` says what is wrong with it."""
    candidates = [*periodic(run_dir)]
    final = Path(run_dir) / f"checkpoint{MANIFEST_SUFFIX}"
    if final.is_file():
        candidates.append(final)
    best, best_step = None, -1
    for manifest in candidates:
        try:
            if manifest.stat().st_size > MAX_MANIFEST_BYTES:
                continue
            step = json.loads(manifest.read_text()).get("step", -1)
        except (OSError, ValueError, RecursionError, AttributeError):  # unreadable: not a candidate
            continue
        if isinstance(step, int) and step >= best_step:
            best, best_step = manifest, step
    return best if best is not None or not candidates else candidates[-1]


def load_state(path: str | os.PathLike, manifest: Manifest) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The (optimizer, rng) state of a resumable checkpoint, verified against its manifest."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    if manifest.state is None:
        raise CheckpointError(f"checkpoint {str(path)!r} holds weights only and cannot resume training",
                              hint="resume from a run's periodic checkpoint (checkpoints/step_*.json)")
    file = state_path(find(path))
    if not file.is_file():
        raise CheckpointError(f"checkpoint state file {str(file)!r} is missing", hint="use an earlier checkpoint")
    # State tensors keep their dtypes (step counts, random states): at most 8 bytes an element.
    _check_file_size(file, {k: (v, MAX_ELEMENT_BYTES) for k, v in manifest.state.tensors.items()})
    blob = file.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest.state.sha256:
        raise CheckpointError(f"checkpoint state {str(file)!r} does not match its manifest (sha256 differs)",
                              hint="the file is truncated or corrupt; use an earlier checkpoint")
    try:
        arrays = st_load(blob)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"checkpoint state {str(file)!r} cannot be read: {exc}") from None
    optimizer = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    rng = {k[len("rng."):]: v for k, v in arrays.items() if k.startswith("rng.")}
    return optimizer, rng


def find(path: str | os.PathLike) -> Path:
    """The manifest of a checkpoint given a run directory, a manifest, or a weights file."""
    p = Path(path)
    if p.is_dir():
        candidate = p / f"checkpoint{MANIFEST_SUFFIX}"
        if candidate.is_file():
            return candidate
        newest = periodic(p)
        if not newest:
            raise CheckpointError(f"run directory {str(p)!r} holds no checkpoint.json", hint="train to the end, or point at a checkpoint file")
        return newest[-1]
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
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"checkpoint manifest {str(manifest_path)!r} is {size:,} bytes, more than a manifest "
                              f"can be ({MAX_MANIFEST_BYTES:,})", hint="the file is corrupt or not a gankit checkpoint")
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "manifest"
        raise CheckpointError(f"checkpoint manifest {str(manifest_path)!r} is invalid at {where}: {first['msg']}", hint="the file is corrupt or not a gankit checkpoint") from None
    if manifest.format != FORMAT:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} has format {manifest.format!r}; this gankit reads {FORMAT!r}")
    # At most 8 bytes an element, so that a float64 file is refused by its dtype, below.
    _check_file_size(weights_path, {k: (v, MAX_ELEMENT_BYTES) for k, v in manifest.tensors.items()})
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
    expected = expected_shapes(manifest.generator, manifest.discriminator, ema=manifest.ema)
    check_shapes(weights, expected, str(weights_path))
    check_values(weights, str(weights_path))
    return manifest, weights


def _check_file_size(path: Path, tensors: dict[str, tuple[list[int], int]]) -> None:
    """Refuse, before reading it, a safetensors file larger than the tensors its manifest
    lists (``name -> (shape, most bytes per element)``) and its header can take, or whose
    header claims to be larger than a header can be."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
    header = int.from_bytes(head, "little") if len(head) == 8 else 0
    data = sum(math.prod(shape) * width for shape, width in tensors.values())
    if header > MAX_HEADER_BYTES or size > 8 + header + data:
        raise CheckpointError(f"checkpoint file {str(path)!r} is {size:,} bytes, more than the {data:,} bytes of "
                              f"tensors its manifest lists and a header can take", hint="the file is corrupt or was "
                              "replaced; use the checkpoint's own files, or an earlier checkpoint")


def check_values(weights: dict[str, np.ndarray], where: str) -> None:
    """Refuse weights that are not float32, or not finite (NaN or infinite)."""
    for name, value in weights.items():
        if value.dtype != np.float32:
            raise CheckpointError(f"{where}: tensor {name!r} is {value.dtype}, a gankit checkpoint holds float32 weights",
                                  hint="the file is corrupt or was not written by gankit")
    for name, value in weights.items():
        if not np.all(np.isfinite(value)):
            raise CheckpointError(f"{where}: tensor {name!r} holds NaN or infinite values, so the networks cannot "
                                  "compute anything", hint="use an earlier checkpoint of the run (checkpoints/step_*.json)")


def expected_shapes(generator: NetSpec, discriminator: NetSpec, ema: bool = False) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    roles = [("generator", generator), ("discriminator", discriminator)]
    if ema:
        roles.append(("generator_ema", generator))
    for role, spec in roles:
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
