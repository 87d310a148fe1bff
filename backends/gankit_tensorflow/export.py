"""Export a trainer's generator: to ONNX with tf2onnx, or as a ``tf.Module``."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from gankit.errors import ConfigError, PluginError  # noqa: E402


def export_generator(trainer, path: str | Path, opset: int = 17) -> list[str]:
    """Write the trainer's sampling generator (the EMA one when it keeps one) in eval
    mode as ONNX (its weights frozen into the graph); returns the input names. The
    model takes and returns NCHW tensors, like the spec: the NHWC work stays inside."""
    try:
        import onnx
        import tf2onnx
    except ImportError as exc:
        raise PluginError(f"exporting from TensorFlow needs tf2onnx and onnx ({exc.name} is missing)",
                          hint="pip install 'gankit[onnx]'") from None
    most = max(tf2onnx.constants.OPSET_TO_IR_VERSION)
    if opset > most:
        raise ConfigError(f"the TensorFlow exporter (tf2onnx) writes ONNX opsets up to {most}, not {opset}",
                          hint=f"leave out --opset for opset 17, or choose one up to {most}")
    net = trainer.nets[trainer.sampler]
    spec = trainer.setup.generator
    conditional = bool(spec.conditional)
    sig = [tf.TensorSpec([None, int(spec.input_shape[0])], tf.float32, name="z")]
    if conditional:
        sig.append(tf.TensorSpec([None], tf.int64, name="labels"))
    fn = tf.function(lambda z, *labels: net(z, False, *labels), input_signature=sig, autograph=False)
    model, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset)
    _rename_output(model, "samples")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return [s.name for s in sig]


def _rename_output(model, name: str) -> None:
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
        node.input[:] = [name if i == old else i for i in node.input]
    model.graph.output[0].name = name


class GeneratorModule(tf.Module):
    """A generator as a ``tf.Module``: ``gen(z)`` or, class-conditional, ``gen(z, labels)``
    computes its eval-mode samples (NCHW images, float32); ``trainable_variables`` are its
    weights, so it works inside a ``tf.function`` or a Keras model (as a layer's call)."""

    def __init__(self, net):
        super().__init__(name="generator")
        self.net = net
        self.conditional = bool(net.spec.conditional)

    def __call__(self, z, labels=None):
        if self.conditional and labels is None:
            raise ValueError("the generator is class-conditional: call it with labels")
        return self.net(z, False, labels if self.conditional else None)


def generator_module(trainer) -> GeneratorModule:
    """The trainer's sampling generator (the EMA one when it keeps one) as a
    :class:`GeneratorModule`: a copy of its weights, so using or training it leaves the
    trainer alone."""
    from gankit_tensorflow.nn import build_net, load_weights

    net = load_weights(build_net(trainer.nets[trainer.sampler].spec), trainer.export_weights(trainer.sampler))
    return GeneratorModule(net)
