"""The plugin's own tests: gankit's conformance suite on its loss and architecture.

``gankit_conformance`` is a fixture of gankit's pytest plugin: it runs the suite on
the named plugins, on every installed backend (or those given with
``--gankit-backend``), and fails listing each broken property. That, plus a check that
the entry point registers, is all the testing a gankit plugin needs.
"""

import numpy as np

import gankit
from gankit_example_plugin.losses import Focal, FocalParams


def test_plugins_are_registered_by_entry_point():
    registry = gankit.get_registry()
    assert registry.get("loss", "focal").distribution == "gankit-example-plugin"
    assert registry.get("architecture", "pyramid_mlp").distribution == "gankit-example-plugin"


def test_focal_loss_conforms(gankit_conformance):
    gankit_conformance(losses=["focal", 'focal:{"gamma": 0.5}'])


def test_pyramid_mlp_conforms(gankit_conformance):
    gankit_conformance(architectures=["pyramid_mlp", 'pyramid_mlp:{"norm": "none", "depth": 1}'])


def test_focal_with_gamma_zero_is_the_non_saturating_loss():
    ops = gankit.NumpyOps(dtype="float64")
    focal = Focal(FocalParams(gamma=0.0))
    non_saturating = gankit.get_registry().get("loss", "non_saturating").record.factory(None)
    real, fake = np.array([-3.0, 0.5, 7.0]), np.array([2.0, -1.0, 0.0])
    assert np.isclose(focal.discriminator(ops, real, fake), non_saturating.discriminator(ops, real, fake))
    assert np.isclose(focal.generator(ops, fake), non_saturating.generator(ops, fake))
