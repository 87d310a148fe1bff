"""Fixtures of the conformance-suite tests: a registry holding the mutant plugins."""

import pytest


@pytest.fixture(scope="session")
def mutant_registry():
    """The real backends and built-in architectures, plus every mutant from mutants.py."""
    pytest.importorskip("torch")
    import gankit
    import gankit_plugins.architectures
    import gankit_tensorflow.plugin
    import gankit_torch.plugin
    import mutants

    return gankit.Registry.from_plugins(
        [gankit_torch.plugin, gankit_tensorflow.plugin, gankit_plugins.architectures, mutants], distribution="mutants")


@pytest.fixture(scope="session")
def both_backends():
    pytest.importorskip("torch")
    pytest.importorskip("tensorflow")
    return ["torch", "tensorflow"]
