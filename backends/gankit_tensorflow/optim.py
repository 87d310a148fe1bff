"""Optimizers with torch.optim's exact update rules, as a few TensorFlow ops per step.

Why not ``keras.optimizers``: Keras 3 puts Adam's epsilon inside the bias correction
(``m_hat / (sqrt(v_hat) + eps_hat)`` with a rescaled epsilon) and RMSprop's inside the
square root, has no L2-into-gradient Adam, and keeps its slots as Keras variables. Both
backends must train alike from the same weights, so these small optimizers follow
``torch.optim`` line by line, keep their slots in plain ``tf.Variable`` s (created once,
eagerly) and run inside ``tf.function`` and XLA.

Slots are named and chosen by :func:`gankit.trainer.optimizer_slots` (torch's names:
``exp_avg``, ``exp_avg_sq``, ``square_avg``, ``momentum_buffer``), the canonical layout
every backend saves; :class:`gankit.trainer.BaseTrainer` checks a saved state before
:meth:`Optimizer.load_state_dict` sees it.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.protocol import OptimizerSettings  # noqa: E402
from gankit.trainer import optimizer_slots  # noqa: E402

#: torch.optim.RMSprop's default smoothing constant (OptimizerSettings has no field for it).
RMSPROP_ALPHA = 0.99


class Optimizer:
    """Base: one update of ``variables`` (canonical name -> variable) per :meth:`apply`."""

    def __init__(self, settings: OptimizerSettings, variables: Mapping[str, tf.Variable]):
        self.settings = settings
        self.names = tuple(variables)
        self.variables = tuple(variables.values())
        # lr is a variable so a schedule can change it without retracing the step.
        self.lr = tf.Variable(float(settings.lr), dtype=tf.float32, trainable=False, name="lr")
        self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.slots = [
            {s: tf.Variable(tf.zeros_like(v), trainable=False, name=s) for s in optimizer_slots(settings)}
            for v in self.variables
        ]

    def step(self, grads: Sequence[tf.Tensor], lr=None, loss_scale: "LossScale | None" = None) -> None:
        """One training update from ``grads`` (of a loss scaled by ``loss_scale`` under
        float16: unscaled, and skipped when not all finite): at learning rate ``lr`` (None:
        the current one), clipped to the norm ``clip_grad_norm`` as
        ``torch.nn.utils.clip_grad_norm_`` does, applied, then the weights clipped to
        ``clip_weights`` (WGAN)."""
        if lr is not None:
            self.lr.assign(lr)
        clip = lambda g: _clip_grad_norm(g, self.settings.clip_grad_norm)  # noqa: E731
        if loss_scale is None:
            self.apply(clip(grads))
        else:
            loss_scale.apply(self, grads, clip=clip)
        if self.settings.clip_weights:
            self.clip_weights(self.settings.clip_weights)

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        """One step with gradients aligned to ``variables``."""
        step = _assign(self.iterations, self.iterations + 1)
        lr = tf.identity(self.lr)  # read once per step, not once per variable
        for var, grad, slots in zip(self.variables, grads, self.slots):
            self._update(var, tf.convert_to_tensor(grad, var.dtype), slots, tf.cast(lr, var.dtype), step)

    def _update(self, var, grad, slots, lr, step):
        raise NotImplementedError

    def clip_weights(self, c: float) -> None:
        """WGAN weight clipping: every variable this optimizer updates into ``[-c, c]``."""
        for var in self.variables:
            _assign(var, tf.clip_by_value(var, -c, c))

    # -- state (torch slot names) ----------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """``step`` and every slot as ``<param name>.<slot>``, numpy."""
        out = {"step": np.asarray(self.iterations.numpy(), dtype=np.int64)}
        for name, slots in zip(self.names, self.slots):
            out.update({f"{name}.{s}": np.asarray(v.numpy(), dtype=np.float32) for s, v in slots.items()})
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Load what :meth:`state_dict` (or another backend's export) wrote; the names and
        shapes were checked by :func:`gankit.trainer.check_optimizer_state`."""
        self.iterations.assign(int(np.asarray(state["step"])))
        for name, slots in zip(self.names, self.slots):
            for s, v in slots.items():
                v.assign(np.asarray(state[f"{name}.{s}"], dtype=v.dtype.as_numpy_dtype))


def _clip_grad_norm(grads, max_norm: float | None):
    """torch.nn.utils.clip_grad_norm_: ``g *= min(1, max_norm / (norm + 1e-6))``."""
    if not max_norm:
        return grads
    coef = tf.minimum(max_norm / (tf.linalg.global_norm(grads) + 1e-6), 1.0)
    return [g * coef for g in grads]


def _handle(var):
    """The resource handle a raw op updates: under a tf.distribute strategy, this
    replica's own copy (every replica applies the same all-reduced update)."""
    if hasattr(var, "_get_on_device_or_primary"):  # a distributed variable
        return var._get_on_device_or_primary().handle
    return var.handle


def _assign(var, value):
    """``var = value`` on this replica's copy; returns ``value``. Every update inside a
    step writes this way, not with ``var.assign``: a distributed variable's assign
    synchronises the replicas (a ``merge_call``), which TensorFlow forbids inside the
    ``tf.cond`` by which float16's loss scale skips a step."""
    value = tf.convert_to_tensor(value, var.dtype)
    tf.raw_ops.AssignVariableOp(resource=_handle(var), value=value)
    return value


def _bias_correction(beta: float, step) -> tf.Tensor:
    # 1 - beta^t in float64, as torch computes it in Python floats.
    return 1.0 - tf.math.pow(tf.constant(beta, tf.float64), tf.cast(step, tf.float64))


class Adam(Optimizer):
    """torch.optim.Adam (L2 weight decay added to the gradient) and, with
    ``decoupled=True``, torch.optim.AdamW (``p -= lr * wd * p`` before the update)."""

    def __init__(self, settings, variables, decoupled: bool = False):
        self.decoupled = decoupled
        super().__init__(settings, variables)

    def apply(self, grads: Sequence[tf.Tensor]) -> None:
        """One fused ``ResourceApplyAdam`` kernel per variable (a few ops in all, not ~20
        per variable). torch's update ``lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps)`` is
        TensorFlow's ``lr * sqrt(bc2) / bc1 * m / (sqrt(v) + eps')`` with
        ``eps' = eps * sqrt(bc2)``: the same numbers up to rounding."""
        beta1, beta2 = self.settings.betas
        wd, eps = self.settings.weight_decay, self.settings.eps
        step = tf.cast(_assign(self.iterations, self.iterations + 1), tf.float64)
        beta1_power = tf.math.pow(tf.constant(beta1, tf.float64), step)
        beta2_power = tf.math.pow(tf.constant(beta2, tf.float64), step)
        eps_t = eps * tf.math.sqrt(1.0 - beta2_power)
        lr = tf.identity(self.lr)
        for var, grad, slots in zip(self.variables, grads, self.slots):
            dt = var.dtype
            grad = tf.convert_to_tensor(grad, dt)
            lr_v = tf.cast(lr, dt)
            if wd and self.decoupled:
                _assign(var, var * (1 - lr_v * wd))
            elif wd:
                grad = grad + wd * var
            m, v = slots["exp_avg"], slots["exp_avg_sq"]
            tf.raw_ops.ResourceApplyAdam(
                var=_handle(var), m=_handle(m), v=_handle(v), beta1_power=tf.cast(beta1_power, dt),
                beta2_power=tf.cast(beta2_power, dt), lr=lr_v, beta1=tf.constant(beta1, dt),
                beta2=tf.constant(beta2, dt), epsilon=tf.cast(eps_t, dt), grad=grad, use_locking=False)

    def _update(self, var, grad, slots, lr, step):
        beta1, beta2 = self.settings.betas
        wd, eps = self.settings.weight_decay, self.settings.eps
        w = tf.identity(var)
        if wd and self.decoupled:
            w = _assign(var, w * (1 - lr * wd))
        elif wd:
            grad = grad + wd * w
        m = _assign(slots["exp_avg"], beta1 * slots["exp_avg"] + (1 - beta1) * grad)
        v = _assign(slots["exp_avg_sq"], beta2 * slots["exp_avg_sq"] + (1 - beta2) * tf.math.square(grad))
        bc1 = tf.cast(_bias_correction(beta1, step), var.dtype)
        bc2 = tf.cast(tf.math.sqrt(_bias_correction(beta2, step)), var.dtype)
        # torch: denom = sqrt(v) / sqrt(1 - beta2^t) + eps  (eps outside the square root,
        # after the bias correction); step = lr / (1 - beta1^t).
        _assign(var, w - (lr / bc1) * m / (tf.math.sqrt(v) / bc2 + eps))


class RMSprop(Optimizer):
    """torch.optim.RMSprop (alpha 0.99, not centered): eps added outside the square root;
    with momentum, a buffer of ``g / (sqrt(square_avg) + eps)``."""

    def _update(self, var, grad, slots, lr, step):
        wd, eps, momentum = self.settings.weight_decay, self.settings.eps, self.settings.momentum
        w = tf.identity(var)
        if wd:
            grad = grad + wd * w
        sq = _assign(slots["square_avg"], RMSPROP_ALPHA * slots["square_avg"] + (1 - RMSPROP_ALPHA) * tf.math.square(grad))
        scaled = grad / (tf.math.sqrt(sq) + eps)
        if momentum:
            buf = _assign(slots["momentum_buffer"], momentum * slots["momentum_buffer"] + scaled)
            _assign(var, w - lr * buf)
        else:
            _assign(var, w - lr * scaled)


class SGD(Optimizer):
    """torch.optim.SGD with dampening 0, no Nesterov. torch starts the momentum buffer
    at the first gradient; starting from zeros, ``momentum * 0 + g`` is the same."""

    def _update(self, var, grad, slots, lr, step):
        wd, momentum = self.settings.weight_decay, self.settings.momentum
        w = tf.identity(var)
        if wd:
            grad = grad + wd * w
        if momentum:
            grad = _assign(slots["momentum_buffer"], momentum * slots["momentum_buffer"] + grad)
        _assign(var, w - lr * grad)


class LossScale:
    """Dynamic loss scaling for float16, with ``torch.amp.GradScaler``'s rule and defaults.

    The loss is multiplied by ``scale`` before differentiation so that small float16
    gradients do not flush to zero; :meth:`unscale` divides the (float32) gradients
    back. A step whose gradients hold an inf or a NaN is skipped (the optimizer is not
    applied, its step counter does not move) and the scale is multiplied by
    ``backoff_factor``; after ``growth_interval`` good steps in a row it is multiplied by
    ``growth_factor`` (unless that would overflow float32). ``scale`` and ``good_steps``
    are variables updated inside the compiled step; they belong to the resume state.
    """

    def __init__(self, init_scale: float = 2.0**16, growth_factor: float = 2.0, backoff_factor: float = 0.5,
                 growth_interval: int = 2000, name: str = "loss_scale"):
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.growth_interval = int(growth_interval)
        self.scale = tf.Variable(float(init_scale), dtype=tf.float32, trainable=False, name=name)
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_good_steps")

    def scale_loss(self, loss: tf.Tensor) -> tf.Tensor:
        """``loss * scale`` (in float32; call it inside the gradient tape)."""
        return tf.cast(loss, tf.float32) * self.scale

    def unscale(self, grads: Sequence[tf.Tensor]) -> tuple[list[tf.Tensor], tf.Tensor]:
        """``(grads / scale, all finite)``: the true gradients and whether the step may apply."""
        inv = 1.0 / tf.identity(self.scale)  # GradScaler multiplies by the float32 reciprocal too
        grads = [tf.cast(g, tf.float32) * inv for g in grads]
        finite = tf.math.reduce_all(tf.stack([tf.math.reduce_all(tf.math.is_finite(g)) for g in grads]))
        return grads, finite

    def update(self, finite: tf.Tensor) -> None:
        """Back off after a non-finite step; grow after ``growth_interval`` finite ones."""
        scale = tf.identity(self.scale)
        good = tf.where(finite, self.good_steps + 1, tf.zeros_like(self.good_steps))
        due = good >= self.growth_interval  # the counter restarts then, grown or not (torch)
        grown = scale * self.growth_factor
        grow = tf.math.logical_and(due, tf.math.is_finite(grown))
        self.scale.assign(tf.where(finite, tf.where(grow, grown, scale), scale * self.backoff_factor))
        self.good_steps.assign(tf.where(due, tf.zeros_like(good), good))

    def apply(self, optimizer: "Optimizer", grads: Sequence[tf.Tensor], clip=None) -> tf.Tensor:
        """Unscale ``grads`` (the gradients of :meth:`scale_loss`), clip them with ``clip``
        (a function of the gradient list), apply ``optimizer`` only if all are finite, and
        update the scale. Returns whether the step was applied (a bool tensor)."""
        grads, finite = self.unscale(grads)
        if clip is not None:
            grads = clip(grads)

        def step():
            optimizer.apply(grads)
            return tf.constant(True)

        applied = tf.cond(finite, step, lambda: tf.constant(False))
        self.update(finite)
        return applied

    def state(self) -> np.ndarray:
        """``[scale, good steps]`` as float64 (what torch's rng state holds for its scaler)."""
        return np.asarray([float(self.scale.numpy()), float(self.good_steps.numpy())], dtype=np.float64)

    def load_state(self, value) -> None:
        scale, good = np.asarray(value, dtype=np.float64).reshape(2).tolist()
        self.scale.assign(scale)
        self.good_steps.assign(int(good))


def build_optimizer(params: Mapping[str, tf.Variable], settings: OptimizerSettings) -> Optimizer:
    """The optimizer for ``settings`` over ``params`` (canonical name -> variable)."""
    if settings.name == "adam":
        return Adam(settings, params)
    if settings.name == "adamw":
        return Adam(settings, params, decoupled=True)
    if settings.name == "rmsprop":
        return RMSprop(settings, params)
    if settings.name == "sgd":
        return SGD(settings, params)
    raise ValueError(f"unknown optimizer {settings.name!r}; known: adam, adamw, rmsprop, sgd")
