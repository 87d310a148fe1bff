"""A plugin's own ``tf.Module`` or Keras layer (a native architecture) as a TensorFlow-backend net.

:class:`NativeTensorFlowNet` is what ``TensorFlowNet(spec)`` builds for a
:class:`gankit.NativeNet`: it calls the plugin's builder, checks the model it returns
(the declared output shape, no scalar weights) and exposes its variables as a
spec-built net does (``params``, ``buffers``, ``parameters``), so the trainer, its
optimizers, the EMA and checkpoints treat it as any other net. The canonical names are
the model's own: a ``tf.Module``'s attribute paths (``"blocks.0.kernel"``); a Keras
layer's variable paths without the model's own name (``"dense.kernel"`` — name the
layers: Keras numbers unnamed ones per process, and a rebuild must find the same names).
Floating-point variables only; trainable ones are parameters, the rest buffers.

The model is called as ``model(x, training=...)`` (``model(x, labels, training=...)``
when class-conditional) and computes in float32 whatever the training precision.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit import ConfigError  # noqa: E402

from gankit_tensorflow.nn import TensorFlowNet, _identifier, export_weights  # noqa: E402

BACKEND = "tensorflow"


def _what(spec) -> str:
    return f"the tensorflow builder of architecture {spec.architecture!r} ({spec.role})"


def _named_variables(spec, model) -> list[tuple[str, tf.Variable, bool]]:
    """(canonical name, tf.Variable, trainable) of every floating-point variable."""
    if isinstance(model, tf.Module):
        found = model._flatten(predicate=lambda v: isinstance(v, tf.Variable), with_path=True)
        named = [(".".join(map(str, path)), var, var.trainable) for path, var in found]
    elif hasattr(model, "variables") and all(hasattr(v, "path") for v in model.variables):  # Keras 3
        root = getattr(model, "name", "") + "/"
        named = [((v.path[len(root):] if v.path.startswith(root) else v.path).replace("/", "."), v.value, v.trainable)
                 for v in model.variables]
    else:
        raise ConfigError(f"{_what(spec)} returned {type(model).__name__}, not a tf.Module or a Keras layer")
    out, seen = [], set()
    for name, var, trainable in named:
        if id(var) in seen or not var.dtype.is_floating:
            continue
        seen.add(id(var))
        out.append((name, var, bool(trainable)))
    names = [n for n, _, _ in out]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ConfigError(f"{_what(spec)} made a model with two variables named {twice[0]!r}",
                          hint="name its layers")
    return out


class NativeTensorFlowNet(TensorFlowNet):
    """The plugin's model under gankit's calling convention, its variables by canonical name."""

    def __init__(self, spec, dtype: str = "float32", seed: int = 0, **_ignored):
        tf.Module.__init__(self, name=_identifier(spec.name))
        self.spec = spec
        self.dtype = tf.as_dtype(dtype)
        self.compute_dtype = self.dtype
        self.model = spec.build(BACKEND)
        self._check_output()  # also creates a Keras layer's variables
        named = _named_variables(spec, self.model)
        self.params = {k: v for k, v, trainable in named if trainable}
        self.buffers = {k: v for k, v, trainable in named if not trainable}
        self.parameters = tuple(self.params.values())
        shapes = {k: tuple(v.shape.as_list()) for k, v, _ in named}
        scalars = [k for k, s in shapes.items() if s == ()]
        if scalars:
            raise ConfigError(f"{_what(spec)} made a model with the scalar weight {scalars[0]!r}",
                              hint="give it shape (1,): checkpoints store tensors of one axis or more")
        spec.record_state({k: shapes[k] for k in self.params}, {k: shapes[k] for k in self.buffers}, BACKEND)

    def __call__(self, x, training: bool = False, labels=None, **_ignored):
        x = tf.cast(tf.convert_to_tensor(x), self.dtype)
        if self.spec.conditional:
            if labels is None:
                raise ValueError(f"net {self.spec.name!r} is class-conditional: call it with labels")
            y = self.model(x, tf.cast(tf.convert_to_tensor(labels), tf.int32), training=bool(training))
        else:
            y = self.model(x, training=bool(training))
        return tf.cast(y, self.dtype)

    def _check_output(self) -> None:
        spec = self.spec
        x = tf.zeros((2, *spec.input_shape), self.dtype)
        labels = tf.zeros((2,), tf.int32) if spec.conditional else None
        try:
            out = self(x, False, labels)
        except Exception as exc:
            raise ConfigError(f"{_what(spec)} made a model that fails on a batch of shape {tuple(x.shape)}: "
                              f"{type(exc).__name__}: {exc}") from None
        if tuple(out.shape[1:]) != tuple(spec.output_shape):
            raise ConfigError(f"{_what(spec)} made a model that maps {tuple(x.shape)} to {tuple(out.shape)}; "
                              f"the GAN needs (batch, {', '.join(map(str, spec.output_shape))})")


def native_weights(spec, seed: int) -> dict[str, np.ndarray]:
    """The plugin model's own initialisation, drawn under ``tf.random.set_seed(seed)``
    (seed a Keras layer's initializers yourself), by canonical name: what
    :func:`gankit.trainer.with_native_weights` asks of the trainer for a native net."""
    tf.random.set_seed(int(seed) % (1 << 31))
    return export_weights(NativeTensorFlowNet(spec))
