"""Torch optimizers from neutral :class:`gankit.OptimizerSettings`."""

from __future__ import annotations

from typing import Iterable

import torch

from gankit import ConfigError, OptimizerSettings


def build_optimizer(params: Iterable[torch.nn.Parameter], settings: OptimizerSettings) -> torch.optim.Optimizer:
    """``adam`` (weight decay as L2 on the gradient), ``adamw`` (decoupled weight
    decay), ``rmsprop`` (torch's alpha = 0.99), ``sgd`` (with momentum)."""
    s = settings
    params = list(params)
    # Adam and AdamW update all of a net's parameters in one fused kernel on the CPU and
    # CUDA; RMSprop and SGD in a few multi-tensor (foreach) calls. torch picks foreach by
    # itself on CUDA only: on the CPU its default loops over the parameters op by op,
    # which cost the 2D toys' small MLPs a quarter of their step (a grid25_hq step, one
    # thread: 6.0-9.2 ms with the loop or foreach, 5.1-5.9 fused; docs/benchmarks.md).
    # True where torch has these kernels for every parameter; None leaves torch's default.
    native = True if params and all(p.device.type in ("cpu", "cuda") for p in params) else None
    if s.name == "adam":
        return torch.optim.Adam(params, lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay,
                                fused=native)
    if s.name == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay,
                                 fused=native)
    if s.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.lr, alpha=0.99, eps=s.eps,
                                   weight_decay=s.weight_decay, momentum=s.momentum, foreach=native)
    if s.name == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay, foreach=native)
    raise ConfigError(f"unknown optimizer {s.name!r}", hint="use adam, adamw, rmsprop or sgd")
