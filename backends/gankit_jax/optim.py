"""optax optimizers with torch.optim's update rules, from :class:`gankit.OptimizerSettings`.

Each optimizer is an optax chain without the learning rate; the step multiplies by the
scheduled learning rate itself (a traced number, so a schedule never recompiles):

* ``adam``: ``add_decayed_weights(wd)`` (L2 into the gradient, as torch's Adam), then
  ``scale_by_adam`` — optax's ``m_hat / (sqrt(v_hat) + eps)`` is torch's update;
* ``adamw``: ``scale_by_adam``, then the decoupled decay ``p -= lr * wd * p`` (torch's
  AdamW decays before its update; ``p - lr * (u + wd * p)`` is the same number);
* ``rmsprop``: L2, then ``scale_by_rms(decay=0.99, eps_in_sqrt=False)`` (torch's eps
  outside the square root, its alpha 0.99), then ``trace(momentum)`` when set;
* ``sgd``: L2, then ``trace(momentum)`` (torch's momentum buffer, dampening 0).

Gradients are clipped first with torch's ``clip_grad_norm_`` rule
(``g *= min(1, max_norm / (norm + 1e-6))``); with ``clip_weights = c`` every parameter
is clamped to ``[-c, c]`` after the update (WGAN; the slots keep what the update wrote). Slots are saved under torch's names
(``exp_avg``, ``exp_avg_sq``, ``square_avg``, ``momentum_buffer``) in the canonical
layout, so optimizer state moves between backends as the weights do.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import jax
import jax.numpy as jnp
import optax

from gankit.errors import ConfigError
from gankit.protocol import OptimizerSettings
from gankit.trainer import optimizer_slots

#: torch.optim.RMSprop's default smoothing constant (OptimizerSettings has no field for it).
RMSPROP_ALPHA = 0.99
#: Where each torch slot lives in the optax state (a field of one of its named tuples).
_OPTAX_FIELD = {"exp_avg": "mu", "exp_avg_sq": "nu", "square_avg": "nu", "momentum_buffer": "trace"}


def _clip_grad_norm(grads, max_norm: float | None):
    """torch.nn.utils.clip_grad_norm_: ``g *= min(1, max_norm / (norm + 1e-6))``."""
    if not max_norm:
        return grads
    norm = optax.tree.norm(grads)
    coef = jnp.minimum(max_norm / (norm + 1e-6), 1.0)
    return jax.tree_util.tree_map(lambda g: g * coef.astype(g.dtype), grads)


class Optimizer:
    """One network's optimizer: an optax chain plus the step count torch keeps.

    State is ``{"step": int32, "inner": optax state}`` (a pytree, updated in the jitted
    step); :meth:`update` returns the new parameters and state.
    """

    def __init__(self, settings: OptimizerSettings):
        s = self.settings = settings
        decay = [optax.add_decayed_weights(s.weight_decay)] if s.weight_decay and s.name != "adamw" else []
        momentum = [optax.trace(decay=s.momentum)] if s.momentum else []
        if s.name in ("adam", "adamw"):
            parts = [*decay, optax.scale_by_adam(b1=s.betas[0], b2=s.betas[1], eps=s.eps)]
        elif s.name == "rmsprop":
            parts = [*decay, optax.scale_by_rms(decay=RMSPROP_ALPHA, eps=s.eps, eps_in_sqrt=False), *momentum]
        elif s.name == "sgd":
            parts = [*decay, *momentum]
        else:
            raise ConfigError(f"unknown optimizer {s.name!r}", hint="use adam, adamw, rmsprop or sgd")
        self.transform = optax.chain(*parts) if parts else optax.identity()
        self.slots = optimizer_slots(s)
        self.decoupled_decay = s.weight_decay if s.name == "adamw" else 0.0

    def init(self, params) -> dict:
        return {"step": jnp.zeros((), jnp.int32), "inner": self.transform.init(params)}

    def update(self, grads, state, params, lr, clip_weights=None):
        """One step: clip the gradients, transform, ``p -= lr * update``, clamp the weights;
        returns ``(params, state)``. ``clip_weights`` overrides the setting's bound (the
        trainer passes it as a traced number, ``inf`` when off, so that a run with and
        without clipping compiles to one program and a bound no weight reaches changes no bit)."""
        grads = _clip_grad_norm(grads, self.settings.clip_grad_norm)
        updates, inner = self.transform.update(grads, state["inner"], params)
        wd = self.decoupled_decay
        new = jax.tree_util.tree_map(
            lambda p, u: p - (lr * (u + wd * p) if wd else lr * u).astype(p.dtype), params, updates)
        c = self.weight_bound if clip_weights is None else clip_weights
        if c is not None:  # WGAN weight clipping: every parameter (not buffer) into [-c, c], after the update
            new = jax.tree_util.tree_map(lambda p: jnp.clip(p, -c, c), new)
        return new, {"step": state["step"] + 1, "inner": inner}

    @property
    def weight_bound(self) -> float | None:
        """The WGAN weight-clipping bound (``clip_weights``), or None."""
        return getattr(self.settings, "clip_weights", None) or None

    # -- state in the portable format ---------------------------------------------------
    def export_state(self, state) -> dict[str, np.ndarray]:
        """``step`` and every slot as ``<canonical param name>.<slot>`` (numpy float32)."""
        out = {"step": np.asarray(int(state["step"]), dtype=np.int64)}
        for slot in self.slots:
            values = optax.tree_utils.tree_get(state["inner"], _OPTAX_FIELD[slot])
            out.update({f"{name}.{slot}": np.array(v, dtype=np.float32) for name, v in values.items()})
        return out

    def load_state(self, params, saved: Mapping[str, np.ndarray]) -> dict:
        """The state :meth:`export_state` (of any backend) wrote, already checked."""
        step = int(np.asarray(saved["step"]))
        inner = self.transform.init(params)
        replace: dict[str, Any] = {}
        for slot in self.slots:
            replace[_OPTAX_FIELD[slot]] = {name: jnp.asarray(np.asarray(saved[f"{name}.{slot}"], np.float32))
                                           for name in params}
        if self.settings.name in ("adam", "adamw"):
            replace["count"] = jnp.asarray(step, jnp.int32)  # Adam's bias correction counts the steps
        inner = optax.tree_utils.tree_set(inner, **replace) if replace else inner
        return {"step": jnp.asarray(step, jnp.int32), "inner": inner}


def build_optimizer(params, settings: OptimizerSettings) -> tuple[Optimizer, dict]:
    """The optimizer for ``settings`` and its initial state for ``params``."""
    opt = Optimizer(settings)
    return opt, opt.init(params)
