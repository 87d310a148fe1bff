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
    if s.name == "adam":
        return torch.optim.Adam(params, lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay)
    if s.name == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, betas=tuple(s.betas), eps=s.eps, weight_decay=s.weight_decay)
    if s.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=s.lr, alpha=0.99, eps=s.eps,
                                   weight_decay=s.weight_decay, momentum=s.momentum)
    if s.name == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    raise ConfigError(f"unknown optimizer {s.name!r}", hint="use adam, adamw, rmsprop or sgd")
