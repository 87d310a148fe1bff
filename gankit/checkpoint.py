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
periodic checkpoints as ``checkpoints/step_NNNNNNNN.*`` (the last N, ordered by the step
in their names, not the names themselves: ``step_100000000`` follows ``step_99999999``) and
the final one as ``checkpoint.*``. Loading parses JSON and safetensors only; it never
executes code. A checkpoint that cannot be loaded (truncated, corrupt) is refused with a
hint naming the run's newest other checkpoint that loads (:func:`load`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shlex
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, ValidationError

from gankit.errors import CheckpointError, ConfigError
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


_PERIODIC_MANIFEST = re.compile(rf"step_(\d+){re.escape(MANIFEST_SUFFIX)}")
FINAL = "checkpoint"


def periodic_step(manifest: str | os.PathLike) -> int | None:
    """The step in a periodic checkpoint's manifest name (``step_00000300.json``: 300), or
    None for any other name."""
    match = _PERIODIC_MANIFEST.fullmatch(Path(manifest).name)
    return int(match.group(1)) if match else None


def periodic(run_dir: str | os.PathLike) -> list[Path]:
    """The manifests of a run's periodic checkpoints, oldest first: ordered by the step in
    their names (a name sort would put ``step_100000000`` before ``step_99999999``)."""
    folder = Path(run_dir) / PERIODIC_DIR
    if not folder.is_dir():
        return []
    found = [(step, p) for p in folder.glob(f"step_*{MANIFEST_SUFFIX}") if (step := periodic_step(p)) is not None]
    return [p for _, p in sorted(found)]


def prune(run_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the ``keep`` periodic checkpoints of the highest steps; returns the
    deleted manifests. A manifest is deleted first, so a half-pruned checkpoint is never
    mistaken for a whole one."""
    old = periodic(run_dir)[: -keep] if keep > 0 else periodic(run_dir)
    for manifest in old:
        _delete(manifest)
    return old


def _delete(manifest: Path) -> None:
    """Delete a checkpoint: its manifest first, then its data files."""
    manifest.unlink(missing_ok=True)
    for p in (paths(manifest)[0], state_path(manifest)):
        p.unlink(missing_ok=True)


def discard_after(run_dir: str | os.PathLike, step: int) -> list[Path]:
    """Delete a run's checkpoints of steps after ``step`` (periodic ones by the step in their
    names, the final one by its manifest's step); returns the deleted manifests. A run
    resumed from an earlier checkpoint than its newest continues from that step, as if the
    later steps had not been taken: their checkpoints would otherwise be taken for newer
    ones of the continued run (by :func:`latest`, and by :func:`prune`, which keeps the
    highest steps). An unreadable final manifest is left alone."""
    gone = [m for m in periodic(run_dir) if periodic_step(m) > step]
    final = Path(run_dir) / f"{FINAL}{MANIFEST_SUFFIX}"
    if _manifest_step(final) is not None and _manifest_step(final) > step:
        gone.append(final)
    for manifest in gone:
        _delete(manifest)
    return gone


def _manifest_step(manifest: Path) -> int | None:
    """The step a manifest file names, or None when it is missing or unreadable (read as
    JSON only, without the schema: a cheap look, not a check)."""
    try:
        if manifest.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        step = json.loads(manifest.read_text()).get("step")
    except (OSError, ValueError, RecursionError, AttributeError):
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def resume_target(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """What ``gankit train --resume PATH`` continues: ``(run directory, manifest)``. PATH is
    a run directory (manifest None: its newest checkpoint) or one checkpoint of a run
    directory, to continue from exactly that one: a periodic checkpoint
    ``RUN/checkpoints/step_N.json`` or the final ``RUN/checkpoint.json`` (either of its
    ``.safetensors`` files names it too)."""
    p = Path(path)
    if p.is_dir():
        return p, None
    usage = "--resume takes a run directory, or one of its checkpoints (RUN/checkpoints/step_N.json)"
    if not p.exists():
        raise ConfigError(f"--resume {str(p)!r} does not exist", hint=usage)
    if not (p.name.endswith(MANIFEST_SUFFIX) or p.name.endswith(WEIGHTS_SUFFIX)):
        raise ConfigError(f"--resume {str(p)!r} is neither a run directory nor a checkpoint", hint=usage)
    manifest = paths(p)[1]
    run_dir = _run_of(manifest, final_alone=True)
    if run_dir is None:
        raise ConfigError(f"--resume {str(p)!r} is not a checkpoint of a run directory (RUN/checkpoints/step_N.json "
                          f"or RUN/checkpoint.json)", hint="resume a run directory, or one of its checkpoints")
    if not manifest.is_file():
        raise CheckpointError(f"checkpoint manifest {str(manifest)!r} is missing",
                              hint=_earlier_hint(manifest, resume=True))
    return run_dir, manifest


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
    candidates = _checkpoints(run_dir)
    best, best_step = None, -1
    for manifest in candidates:
        step = _manifest_step(manifest)  # unreadable: not a candidate
        if step is not None and step >= best_step:
            best, best_step = manifest, step
    return best if best is not None or not candidates else candidates[-1]


def _checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """The manifests of a run directory: its periodic checkpoints by step, then the final one."""
    final = Path(run_dir) / f"{FINAL}{MANIFEST_SUFFIX}"
    return [*periodic(run_dir), *([final] if final.is_file() else [])]


def _run_of(manifest: Path, final_alone: bool = False) -> Path | None:
    """The run directory a checkpoint's manifest belongs to: ``RUN`` of
    ``RUN/checkpoints/step_N.json``, or of ``RUN/checkpoint.json`` when ``RUN/checkpoints``
    exists or ``final_alone``; None for a checkpoint outside a run directory."""
    folder = manifest.parent if manifest.parent.name else Path(os.path.abspath(manifest)).parent  # "step_N.json"
    if periodic_step(manifest) is not None and folder.name == PERIODIC_DIR:
        return folder.parent
    if manifest.name == f"{FINAL}{MANIFEST_SUFFIX}" and (final_alone or (manifest.parent / PERIODIC_DIR).is_dir()):
        return manifest.parent
    return None


def earlier(manifest: str | os.PathLike, *, resume: bool = False) -> Path | None:
    """The newest other checkpoint of ``manifest``'s run directory, at its step or before,
    that loads (and, with ``resume``, whose training state loads too); None when there is
    none. What to use instead of a checkpoint that cannot be loaded."""
    manifest = Path(manifest)
    run_dir = _run_of(manifest)
    if run_dir is None:
        return None
    limit = periodic_step(manifest)
    if limit is None:
        limit = _manifest_step(manifest)
    same = os.path.abspath(manifest)
    others = [(step, m) for m in _checkpoints(run_dir) if os.path.abspath(m) != same
              and (step := _manifest_step(m)) is not None and (limit is None or step <= limit)]
    for _, candidate in sorted(others, key=lambda pair: pair[0], reverse=True):
        try:
            loaded, _ = _load(candidate)
            if resume:
                _load_state(candidate, loaded)
        except CheckpointError:
            continue
        return candidate
    return None


def _earlier_hint(manifest: Path, resume: bool, what: str = "") -> str | None:
    """``what`` (why the checkpoint cannot be used), then, for a checkpoint of a run
    directory, the exact checkpoint to use instead (with ``resume``: the command)."""
    parts = [what] if what else []
    if _run_of(manifest) is not None:
        other = earlier(manifest, resume=resume)
        if other is None:
            parts.append("the run has no earlier checkpoint that loads")
        else:
            use = shlex.quote(str(other))
            parts.append(f"use an earlier checkpoint: {f'gankit train --resume {use}' if resume else use}")
    return "; ".join(parts) or None


class _Damaged(CheckpointError):
    """A checkpoint file that is missing, truncated or corrupt: :func:`load` and
    :func:`load_state` add the run's earlier checkpoint to the hint."""


def load_state(path: str | os.PathLike, manifest: Manifest) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The (optimizer, rng) state of a resumable checkpoint, verified against its manifest.
    A missing or corrupt state file is refused with the command that resumes from the run's
    newest earlier checkpoint that loads."""
    try:
        return _load_state(path, manifest)
    except _Damaged as exc:
        raise CheckpointError(exc.message, hint=_earlier_hint(find(path), True, exc.hint or "")) from None


def _load_state(path: str | os.PathLike, manifest: Manifest) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    if manifest.state is None:
        raise CheckpointError(f"checkpoint {str(path)!r} holds weights only and cannot resume training",
                              hint="resume from a run's periodic checkpoint (checkpoints/step_*.json)")
    file = state_path(find(path))
    if not file.is_file():
        raise _Damaged(f"checkpoint state file {str(file)!r} is missing")
    # State tensors keep their dtypes (step counts, random states): at most 8 bytes an element.
    _check_file_size(file, {k: (v, MAX_ELEMENT_BYTES) for k, v in manifest.state.tensors.items()})
    blob = file.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest.state.sha256:
        raise _Damaged(f"checkpoint state {str(file)!r} does not match its manifest (sha256 differs)",
                       hint="the file is truncated or corrupt")
    try:
        arrays = st_load(blob)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise _Damaged(f"checkpoint state {str(file)!r} cannot be read: {exc}") from None
    optimizer = {k[len("optimizer."):]: v for k, v in arrays.items() if k.startswith("optimizer.")}
    rng = {k[len("rng."):]: v for k, v in arrays.items() if k.startswith("rng.")}
    return optimizer, rng


def find(path: str | os.PathLike) -> Path:
    """The manifest of a checkpoint given a run directory (its final checkpoint, else its
    newest periodic one), a manifest, or a weights file."""
    p = Path(path)
    if p.is_dir():
        candidate = p / f"{FINAL}{MANIFEST_SUFFIX}"
        if candidate.is_file():
            return candidate
        newest = periodic(p)
        if not newest:
            raise CheckpointError(f"run directory {str(p)!r} holds no checkpoint.json", hint="train to the end, or point at a checkpoint file")
        return newest[-1]
    other = _RUN_FILES.get(p.name)
    if other or (p.suffix not in (MANIFEST_SUFFIX, ".safetensors") and p.exists()):
        raise CheckpointError(f"{str(p)!r} is not a checkpoint" + (f" but the run's {other}" if other else ""),
                              hint=f"give the run directory ({p.parent}) or a checkpoint manifest "
                                   "(RUN/checkpoint.json, RUN/checkpoints/step_N.json)")
    return paths(p)[1]


#: The JSON files of a run directory that are not checkpoints, and what they are.
_RUN_FILES = {"config.json": "config", "summary.json": "summary", "eval.json": "evaluation",
              "modes_over_training.json": "mode counts"}


def load(path: str | os.PathLike, *, resume: bool = False) -> tuple[Manifest, dict[str, np.ndarray]]:
    """Read and verify a checkpoint: manifest schema, hash, tensor names and shapes.

    A checkpoint whose files are missing, truncated or corrupt is refused with a hint that
    names the run's newest earlier checkpoint that loads: as the command that resumes from
    it (``gankit train --resume RUN/checkpoints/step_N.json``) when ``resume``, else as
    its path."""
    manifest_path = find(path)
    try:
        return _load(manifest_path)
    except _Damaged as exc:
        raise CheckpointError(exc.message, hint=_earlier_hint(manifest_path, resume, exc.hint or "")) from None


def _load(manifest_path: Path) -> tuple[Manifest, dict[str, np.ndarray]]:
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    weights_path = paths(manifest_path)[0]
    for p in (manifest_path, weights_path):
        if not p.is_file():
            raise _Damaged(f"checkpoint file {str(p)!r} is missing", hint="a checkpoint is a .json manifest and a .safetensors file side by side")
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise _Damaged(f"checkpoint manifest {str(manifest_path)!r} is {size:,} bytes, more than a manifest "
                       f"can be ({MAX_MANIFEST_BYTES:,})", hint="the file is corrupt or not a gankit checkpoint")
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_bytes())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "manifest"
        raise _Damaged(f"checkpoint manifest {str(manifest_path)!r} is invalid at {where}: {first['msg']}", hint="the file is corrupt or not a gankit checkpoint") from None
    if manifest.format != FORMAT:
        raise CheckpointError(f"checkpoint {str(manifest_path)!r} has format {manifest.format!r}; this gankit reads {FORMAT!r}")
    # At most 8 bytes an element, so that a float64 file is refused by its dtype, below.
    _check_file_size(weights_path, {k: (v, MAX_ELEMENT_BYTES) for k, v in manifest.tensors.items()})
    blob = weights_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest.sha256:
        raise _Damaged(f"checkpoint weights {str(weights_path)!r} do not match their manifest (sha256 differs)", hint="the file is truncated or corrupt")
    try:
        weights = st_load(blob)
    except (SafetensorError, ValueError, json.JSONDecodeError) as exc:
        raise _Damaged(f"checkpoint weights {str(weights_path)!r} cannot be read: {exc}") from None
    got = {k: list(v.shape) for k, v in weights.items()}
    if got != manifest.tensors:
        diff = sorted(set(got) ^ set(manifest.tensors)) or sorted(k for k in got if got[k] != manifest.tensors[k])
        raise _Damaged(f"checkpoint {str(weights_path)!r}: tensors differ from the manifest ({', '.join(diff[:3])})", hint="the file is corrupt")
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
    if header > MAX_HEADER_BYTES:
        raise _Damaged(f"checkpoint file {str(path)!r} has a header of {header:,} bytes, more than a header can be "
                       f"({MAX_HEADER_BYTES:,})", hint="the file is corrupt or was replaced by another")
    if size > 8 + header + data:
        raise _Damaged(f"checkpoint file {str(path)!r} is {size:,} bytes, more than the {data:,} bytes of "
                       f"tensors its manifest lists and a header can take",
                       hint="the file is corrupt or was replaced by another")


def check_values(weights: dict[str, np.ndarray], where: str) -> None:
    """Refuse weights that are not float32, or not finite (NaN or infinite)."""
    for name, value in weights.items():
        if value.dtype != np.float32:
            raise _Damaged(f"{where}: tensor {name!r} is {value.dtype}, a gankit checkpoint holds float32 weights",
                           hint="the file is corrupt or was not written by gankit")
    for name, value in weights.items():
        if not np.all(np.isfinite(value)):
            raise _Damaged(f"{where}: tensor {name!r} holds NaN or infinite values, so the networks cannot "
                           "compute anything")


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
        raise _Damaged(f"{where}: tensor {missing[0]!r} is missing ({len(missing)} missing in all)", hint="the checkpoint was written for another architecture")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise _Damaged(f"{where}: unexpected tensor {extra[0]!r} ({len(extra)} unexpected in all)", hint="the checkpoint was written for another architecture")
    for name, shape in expected.items():
        if tuple(weights[name].shape) != tuple(shape):
            raise _Damaged(f"{where}: tensor {name!r} has shape {tuple(weights[name].shape)}, the model expects {tuple(shape)}", hint="the checkpoint was written for another architecture")


#: Spec fields a backend fills in when it builds a native net (not part of its description).
_BUILT_FIELDS = {"parameters", "buffers"}


def net_difference(saved: Any, now: Any) -> str | None:
    """The first field in which a checkpoint's network (a NetSpec or NativeNet) differs from
    the one built now, e.g. ``layers[0].units: 128 in the checkpoint, 64 now``; None when
    they are the same network."""
    dump = lambda spec: spec.model_dump(mode="json", exclude=_BUILT_FIELDS)  # noqa: E731
    return first_difference(dump(saved), dump(now))


def first_difference(saved: Any, now: Any, where: str = "") -> str | None:
    """The first place, depth first, in which two JSON values differ: ``where: X in the
    checkpoint, Y now`` (a list of another length: how many entries each has)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in [*saved, *(k for k in now if k not in saved)]:
            at = f"{where}.{key}" if where else str(key)
            if key not in now:
                return f"{at}: {_show(saved[key])} in the checkpoint, absent now"
            if key not in saved:
                return f"{at}: absent in the checkpoint, {_show(now[key])} now"
            found = first_difference(saved[key], now[key], at)
            if found:
                return found
        return None
    if isinstance(saved, list) and isinstance(now, list):
        for i, (a, b) in enumerate(zip(saved, now)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        if len(saved) != len(now):
            return f"{where or 'value'}: {len(saved)} entries in the checkpoint, {len(now)} now"
        return None
    if saved != now:
        return f"{where or 'value'}: {_show(saved)} in the checkpoint, {_show(now)} now"
    return None


def _show(value: Any, width: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= width else text[: width - 3] + "..."
