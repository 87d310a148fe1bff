"""gankit's JAX backend (plain jax + optax), built only from :mod:`gankit.backend_contract`.

Importing this package does not import jax: the plugin registers a lazy factory
(:mod:`gankit_jax.plugin`), and jax loads only when the backend is built.

Modules (the same names as ``gankit_torch`` and ``gankit_tensorflow``):

* ``device``      - resolve a config device string to a ``jax.Device``; CPU threads;
* ``ops``         - :class:`~gankit_jax.ops.JaxOps`, the array vocabulary on jax;
* ``nn``          - a :class:`gankit.NetSpec` as a pure function of canonical weights;
* ``optim``       - optax optimizers with torch.optim's update rules and slot names;
* ``step``        - :class:`~gankit_jax.step.JaxTrainer`, a jitted training step;
* ``distributed`` - single process only (data-parallel training is optional);
* ``export``      - the generator as a jax function with its params (no ONNX);
* ``backend``     - :class:`~gankit_jax.backend.JaxBackend`, what the plugin returns.
"""

__all__ = ["backend", "device", "distributed", "export", "nn", "ops", "optim", "plugin", "step"]
