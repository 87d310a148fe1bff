"""Registers the TensorFlow backend with gankit; importing this module does not import TensorFlow."""

from __future__ import annotations

import gankit


def _make_backend():
    from gankit_tensorflow.backend import TensorFlowBackend

    return TensorFlowBackend()


@gankit.hookimpl
def gankit_register_backends():
    return [
        gankit.BackendRecord(
            name="tensorflow",
            factory=_make_backend,
            requires=("tensorflow",),
            extra="tensorflow",
            description="TensorFlow: tf.function steps",
        )
    ]
