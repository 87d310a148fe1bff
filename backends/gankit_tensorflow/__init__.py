"""gankit's TensorFlow backend: ops, networks, optimizers and a tf.function training step.

Importing this package does not import TensorFlow; the modules below do
(``plugin`` excepted, which registers the backend lazily).
"""
