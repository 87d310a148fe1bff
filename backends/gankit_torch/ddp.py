"""torch's data-parallel machinery (torch only): each net in
:class:`torch.nn.parallel.DistributedDataParallel`, and the buffers broadcast from rank 0.

The trainer wraps the generator and the discriminator in ``DistributedDataParallel``
(:func:`wrap`), and uses each wrapper exactly where its net is trained:

* discriminator update: fakes come from the plain generator (``ddp.module``) under
  ``no_grad``; the real and fake logits come from the wrapped discriminator (two forwards
  before one backward is fine: each parameter's gradient accumulator fires once per
  backward, with the sum); penalties differentiate the plain discriminator with
  ``torch.autograd.grad(..., inputs=[samples], create_graph=True)``, which runs no
  parameter's accumulator and so no DDP hook; the one ordinary ``backward`` of
  loss + penalties then reaches every parameter, and DDP all-reduces (averages) the
  gradients, double-backward terms included.
* generator update: the wrapped generator, the plain discriminator, and
  ``backward(inputs=generator parameters)``: DDP averages the generator's gradients and
  the discriminator's reducer is not involved.

What does not work, and is not done: a backward of a penalty alone (StyleGAN2's lazy R1)
leaves the last layer's bias without a gradient, and the next forward fails with
"Expected to have finished reduction in the prior iteration before starting a new one";
``backward(create_graph=True)`` through a DDP module fails ("a leaf Variable that requires
grad is being used in an in-place operation", after DDP's warning that higher-order
gradients are not synchronized). Every parameter of the net being trained gets a gradient
in each of its backward passes, so ``find_unused_parameters`` stays off (no graph walk
after each forward) and ``static_graph`` too (nothing it enables is needed).

Buffers (batch-norm running statistics): DDP's own buffer sync would broadcast rank 0's
buffers before every forward of a wrapper (2 · n_critic + 1 per step) and leave the other
ranks holding their own last update between steps; it is turned off, and the trainer
broadcasts the floating-point buffers from rank 0 once, after each step (:func:`broadcast`).
Rank 0's buffers are the same either way (nobody overwrites them); the other replicas end
every step identical to it. ``gradient_as_bucket_view``: gradients are views into DDP's
all-reduce buckets, which saves copying the averaged gradients back.
"""

from __future__ import annotations

import inspect

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from gankit import ConfigError


def wrap(module: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``module`` (already on ``device``) in ``DistributedDataParallel`` with the settings
    the module docstring explains; ``device_ids`` names the rank's GPU, none on the cpu."""
    if not (dist.is_available() and dist.is_initialized()):
        raise ConfigError("data-parallel training needs torch.distributed's process group, which is not initialised",
                          hint="launch with torchrun --nproc-per-node N (world_size > 1 comes from its environment)")
    options = {"device_ids": [device.index] if device.type == "cuda" else None,
               "find_unused_parameters": False, "static_graph": False, "gradient_as_bucket_view": True}
    # torch 2.13 renamed broadcast_buffers (deprecated) to forward_sync_buffers.
    sync = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters \
        else "broadcast_buffers"
    options[sync] = False
    return DistributedDataParallel(module, **options)


def broadcast(tensors: list[torch.Tensor], world_size: int, src: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``src``'s values (one coalesced
    broadcast): the nets' buffers after each step."""
    if world_size <= 1 or not tensors:
        return
    flat = torch._utils._flatten_dense_tensors(tensors)
    dist.broadcast(flat, src)
    for t, synced in zip(tensors, torch._utils._unflatten_dense_tensors(flat, tensors)):
        t.copy_(synced)
