"""gankit's PyTorch backend.

Importing this package does not import torch: the plugin registers a lazy factory
(:mod:`gankit_torch.plugin`), and torch loads only when the backend is built.

Modules (mirrored file for file by ``gankit_tensorflow``):

* ``device``  - resolve a config device string to a ``torch.device``;
* ``ops``     - :class:`~gankit_torch.ops.TorchOps`, the array vocabulary on torch;
* ``nn``      - build a :class:`gankit.NetSpec` as a ``torch.nn.Module``; canonical weights;
* ``optim``   - torch optimizers from :class:`gankit.OptimizerSettings`;
* ``step``    - :class:`~gankit_torch.step.TorchTrainer`, the training step (the primitives of
  :mod:`gankit.backend_contract` on a :class:`gankit.trainer.BaseTrainer`); torch's own
  pieces of it: ``amp`` (autocast, loss scaling) and ``compiled`` (``torch.compile``);
* ``backend`` - :class:`~gankit_torch.backend.TorchBackend`, what the plugin returns.
"""

__all__ = ["backend", "device", "nn", "ops", "optim", "plugin", "step"]
