"""gankit's TensorFlow backend: ops, networks, optimizers and a tf.function training step.

Importing this package does not import TensorFlow; the modules below do
(``plugin`` excepted, which registers the backend lazily).

TensorFlow's C++ start-up messages (CPU feature notes, the cuInit error of a CUDA build on a
machine without a GPU) are silenced before TensorFlow is imported, unless ``gankit --debug``
or ``GANKIT_DEBUG=1`` asks for them or ``TF_CPP_MIN_LOG_LEVEL`` is already set.
"""

import os as _os

if _os.environ.get("GANKIT_DEBUG", "") in ("", "0"):
    _os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
