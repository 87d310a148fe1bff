"""Data-parallel training on torch: one process per rank under ``torchrun``.

``torchrun --nproc-per-node N -m gankit train ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK`` and the rendezvous address; :func:`init` joins the process group (gloo on
cpu, nccl on cuda) and picks the rank's device. The trainer then does what
``DistributedDataParallel`` does, by hand: every backward is followed by one all-reduce
(mean) of the network's gradients in a single coalesced bucket, and buffers (batch-norm
running statistics) are broadcast from rank 0 after each step, so replicas stay
identical. Why not the ``DistributedDataParallel`` wrapper itself: a GAN step calls the
discriminator several times per backward (real, fake, penalty) and differentiates
through it twice (gradient penalties); DDP's reducer supports neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from gankit import ConfigError


@dataclass(frozen=True)
class Context:
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


def init(mode: str = "auto", device: str = "auto") -> Context:
    """Join torchrun's process group when ``mode`` is ``auto`` and ``WORLD_SIZE > 1``.

    The cpu uses gloo; cuda uses nccl with device ``cuda:LOCAL_RANK``. Called twice,
    it returns the existing group's context.
    """
    world = launcher_world_size()
    if mode == "mirrored":
        raise ConfigError("training.distributed = 'mirrored' is TensorFlow's MirroredStrategy",
                          hint="on torch, launch with torchrun --nproc-per-node N and keep distributed = 'auto'")
    if mode == "off" or world <= 1:
        return Context()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device not in ("cpu",) and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                   backend=dist.get_backend())


def rank_device(ctx: Context, device: str) -> str:
    """The device string a rank trains on: ``cuda:LOCAL_RANK`` under nccl, else ``device``."""
    if ctx.enabled and ctx.backend == "nccl":
        return f"cuda:{ctx.local_rank}"
    return device


def all_reduce_mean(tensors: list[torch.Tensor], world_size: int) -> None:
    """Average ``tensors`` over the ranks in place, in one coalesced all-reduce."""
    if world_size <= 1 or not tensors:
        return
    flat = torch._utils._flatten_dense_tensors(tensors)
    dist.all_reduce(flat)
    flat.div_(world_size)
    for t, synced in zip(tensors, torch._utils._unflatten_dense_tensors(flat, tensors)):
        t.copy_(synced)


def broadcast(tensors: list[torch.Tensor], world_size: int, src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (one coalesced broadcast)."""
    if world_size <= 1 or not tensors:
        return
    flat = torch._utils._flatten_dense_tensors(tensors)
    dist.broadcast(flat, src)
    for t, synced in zip(tensors, torch._utils._unflatten_dense_tensors(flat, tensors)):
        t.copy_(synced)


def barrier(ctx: Context) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: Context) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
