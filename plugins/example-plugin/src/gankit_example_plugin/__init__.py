"""gankit-example-plugin: the hooks gankit calls, and nothing else.

gankit finds this module through the ``gankit`` entry point in ``pyproject.toml`` and
calls the functions marked ``@gankit.hookimpl`` whose names match its hooks. Each
returns records: a name, the pydantic model of the params, and a factory.
"""

import gankit

from gankit_example_plugin.architectures import PyramidParams, build_pyramid_mlp
from gankit_example_plugin.losses import Focal, FocalParams


@gankit.hookimpl
def gankit_register_losses():
    return [
        gankit.LossRecord(
            name="focal",
            params=FocalParams,
            factory=Focal,
            description="Non-saturating GAN loss with focal modulation (1 - p_t)^gamma.",
            metadata={"family": Focal.meta.family, "saturating": Focal.meta.saturating, "paper": Focal.meta.paper},
        )
    ]


@gankit.hookimpl
def gankit_register_architectures():
    return [
        gankit.ArchitectureRecord(
            name="pyramid_mlp",
            params=PyramidParams,
            factory=build_pyramid_mlp,
            description="MLP whose hidden widths halve layer by layer (reversed for the generator).",
            # Tells the conformance suite which data to build it for.
            metadata={"conformance": {"data_shape": (2,), "latent_dim": 8}},
        )
    ]
