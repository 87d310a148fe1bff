"""A third-party-style plugin with native single-backend architectures.

``pixel_shuffle`` (torch only) up-samples by sub-pixel convolution (``nn.PixelShuffle``, Shi et al.
2016) and normalises with ``nn.GroupNorm``: neither layer is in gankit's vocabulary, so
the plugin builds the networks itself for torch and declares so with ``native=``. The
module imports no framework: torch is imported by the builder, when the torch backend
calls it. ``depth_to_space`` is the same idea as a ``tf.Module`` for TensorFlow only.
Tests register the module with ``gankit.Registry.from_plugins``, as an entry point would.
"""

from __future__ import annotations

from pydantic import Field

import gankit


class PixelShuffleParams(gankit.StrictModel):
    """Parameters of ``pixel_shuffle``."""

    channels: int = Field(default=8, gt=0)
    """Feature channels of the hidden layer (a multiple of ``groups``)."""
    groups: int = Field(default=2, gt=0)
    """Groups of the GroupNorm layer."""


def _image(shape, role: str) -> tuple[int, int, int]:
    if len(shape) != 3 or shape[1] % 2 or shape[2] % 2:
        raise ValueError(f"pixel_shuffle {role}s images (C, H, W) with even H and W, not {tuple(shape)}")
    return tuple(shape)


def build_torch(params: PixelShuffleParams, *, role, input_shape, output_shape):
    """The generator or discriminator as a ``torch.nn.Module``."""
    from torch import nn

    ch = params.channels
    if role == "generator":
        c, h, w = _image(output_shape, "generate")
        return nn.Sequential(
            nn.Linear(input_shape[0], ch * (h // 2) * (w // 2)),
            nn.Unflatten(1, (ch, h // 2, w // 2)),
            nn.GroupNorm(params.groups, ch),
            nn.ReLU(),
            nn.Conv2d(ch, 4 * c, kernel_size=3, padding=1),
            nn.BatchNorm2d(4 * c),             # running statistics: buffers in the checkpoint
            nn.PixelShuffle(2),                # (4c, h/2, w/2) -> (c, h, w)
            nn.Tanh(),
        )
    c, h, w = _image(input_shape, "discriminate")
    return nn.Sequential(
        nn.PixelUnshuffle(2),                  # (c, h, w) -> (4c, h/2, w/2)
        nn.Conv2d(4 * c, ch, kernel_size=3, padding=1),
        nn.GroupNorm(params.groups, ch),
        nn.LeakyReLU(0.2),
        nn.Flatten(),
        nn.Linear(ch * (h // 2) * (w // 2), 1),
    )


# -- the same idea on TensorFlow: a tf.Module -------------------------------------------
def build_tensorflow(params: PixelShuffleParams, *, role, input_shape, output_shape):
    """The generator or discriminator as a ``tf.Module`` using ``tf.nn.depth_to_space``
    (TensorFlow's pixel shuffle); ``calls`` is a non-trainable variable (a buffer)."""
    import numpy as np
    import tensorflow as tf

    def dense(n_in, n_out, name):
        bound = 1.0 / np.sqrt(n_in)
        return (tf.Variable(tf.random.uniform((n_in, n_out), -bound, bound), name=f"{name}_w"),
                tf.Variable(tf.zeros((n_out,)), name=f"{name}_b"))

    class Net(tf.Module):
        def __init__(self):
            super().__init__(name=f"depth_to_space_{role}")
            self.calls = tf.Variable(tf.zeros((1,)), trainable=False)  # training-mode calls so far
            if role == "generator":
                c, h, w = _image(output_shape, "generate")
                self.shape = (h // 2, w // 2, 4 * c)
                self.hidden = dense(input_shape[0], int(np.prod(self.shape)), "hidden")
            else:
                c, h, w = _image(input_shape, "discriminate")
                self.hidden = dense(4 * c * (h // 2) * (w // 2), params.channels, "hidden")
                self.out = dense(params.channels, 1, "out")

        def __call__(self, x, training=False):
            if training:
                self.calls.assign_add(tf.ones((1,)))
            if role == "generator":
                y = tf.reshape(x @ self.hidden[0] + self.hidden[1], (-1, *self.shape))
                return tf.transpose(tf.tanh(tf.nn.depth_to_space(y, 2)), (0, 3, 1, 2))  # NHWC -> NCHW
            y = tf.nn.space_to_depth(tf.transpose(x, (0, 2, 3, 1)), 2)
            y = tf.nn.leaky_relu(tf.reshape(y, (tf.shape(y)[0], -1)) @ self.hidden[0] + self.hidden[1], 0.2)
            return y @ self.out[0] + self.out[1]

    return Net()


@gankit.hookimpl
def gankit_register_architectures():
    return [
        gankit.ArchitectureRecord(
            name="pixel_shuffle", params=PixelShuffleParams, native={"torch": build_torch},
            description="Sub-pixel convolution generator, GroupNorm discriminator (torch only).",
            metadata={"paper": "Shi et al. 2016, Real-Time Single Image and Video Super-Resolution Using an "
                               "Efficient Sub-Pixel Convolutional Neural Network",
                      "conformance": {"data_shape": (1, 8, 8)}}),
        gankit.ArchitectureRecord(
            name="depth_to_space", params=PixelShuffleParams, native={"tensorflow": build_tensorflow},
            description="tf.nn.depth_to_space generator, space_to_depth discriminator (TensorFlow only).",
            metadata={"conformance": {"data_shape": (1, 8, 8)}}),
    ]
