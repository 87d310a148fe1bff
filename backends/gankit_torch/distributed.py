"""Data-parallel training on torch: one process per rank under ``torchrun``.

``torchrun --nproc-per-node N -m gankit train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`init` joins the process group (gloo on
cpu, nccl on cuda), picks the rank's device and reports the group as a
:class:`gankit.protocol.ProcessGroup`. The trainer wraps its nets in
``DistributedDataParallel`` (:mod:`gankit_torch.ddp`, which explains how each wrapper is
used and how the buffers are kept in step) and reports the step's losses averaged over
the ranks (:func:`all_reduce_mean`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gankit import ConfigError
from gankit.protocol import ProcessGroup


@dataclass(frozen=True)
class _Context:
    """Where this process stands: its rank, the world size, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launcher_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside a launcher)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _join(mode: str, device: str) -> _Context:
    """Join torchrun's process group when ``mode`` is ``auto`` and ``WORLD_SIZE > 1``.

    The cpu uses gloo; cuda uses nccl with device ``cuda:LOCAL_RANK``. Called twice,
    it returns the existing group's context.
    """
    world = launcher_world_size()
    if mode == "mirrored":
        raise ConfigError("training.distributed = 'mirrored' is TensorFlow's MirroredStrategy",
                          hint="on torch, launch with torchrun --nproc-per-node N and keep distributed = 'auto'")
    if mode == "off" or world <= 1:
        return _Context()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device not in ("cpu",) and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return _Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                   backend=dist.get_backend())


def _rank_device(ctx: _Context, device: str) -> str:
    """The device string a rank trains on: ``cuda:LOCAL_RANK`` under nccl, else ``device``."""
    if ctx.enabled and ctx.backend == "nccl":
        return f"cuda:{ctx.local_rank}"
    return device


def all_reduce_mean(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """``values`` averaged over the ranks of the process group, in place, in one coalesced
    all-reduce (the step's reported losses: every rank reports the global means); returns
    ``values`` (unchanged outside a process group)."""
    world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    if world_size <= 1 or not values:
        return values
    flat = torch._utils._flatten_dense_tensors(values)
    dist.all_reduce(flat)
    flat.div_(world_size)
    for t, synced in zip(values, torch._utils._unflatten_dense_tensors(flat, values)):
        t.copy_(synced)
    return values


def _barrier(ctx: _Context) -> None:
    if ctx.enabled:
        dist.barrier()


def _shutdown(ctx: _Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def init(mode: str = "auto", device: str = "auto") -> ProcessGroup:
    """This process's place in torchrun's process group (joined when ``mode`` is ``auto``
    and ``WORLD_SIZE > 1``; gloo on the cpu, nccl with device ``cuda:LOCAL_RANK`` on cuda),
    or a single process. Called twice, it reports the group already joined."""
    ctx = _join(mode, device)
    if not ctx.enabled:
        return ProcessGroup()
    return ProcessGroup(rank=ctx.rank, world_size=ctx.world_size, device=_rank_device(ctx, device),
                        description=f"torchrun, {ctx.backend}, {ctx.world_size} ranks",
                        barrier=lambda: _barrier(ctx), shutdown=lambda: _shutdown(ctx))
