"""Every registered architecture builds a valid spec for both roles."""

import pytest

import gankit

ARCHS = gankit.get_registry().names("architecture")


def _shapes(name):
    """The data shapes an architecture is built for: its conformance hint, else points and small images."""
    hint = gankit.get_registry().get("architecture", name).record.metadata.get("conformance", {})
    return [tuple(hint["data_shape"])] if "data_shape" in hint else [(2,), (1, 8, 8)]


@pytest.mark.parametrize("name, data_shape", [(name, shape) for name in ARCHS for shape in _shapes(name)])
def test_specs_have_the_right_shapes(name, data_shape):
    rec = gankit.get_registry().get("architecture", name).record
    params = rec.params()
    g = rec.factory(params, role="generator", input_shape=(16,), output_shape=data_shape)
    d = rec.factory(params, role="discriminator", input_shape=data_shape, output_shape=(1,))
    assert g.output_shape == data_shape and g.input_shape == (16,)
    assert d.output_shape == (1,) and d.input_shape == data_shape
    assert g.parameter_count() > 0 and d.parameter_count() > 0


def test_mlp_options():
    rec = gankit.get_registry().get("architecture", "mlp").record
    p = rec.params(hidden=[8, 4], norm="batch", output_activation="tanh")
    g = rec.factory(p, role="generator", input_shape=(3,), output_shape=(2,))
    kinds = [layer.kind for layer in g.layers]
    assert kinds == ["dense", "batch_norm", "activation", "dense", "batch_norm", "activation", "dense", "activation"]
    # (3*8+8) + 2*8 + (8*4+4) + 2*4 + (4*2+2)
    assert g.parameter_count() == 32 + 16 + 36 + 8 + 10
    d = rec.factory(p, role="discriminator", input_shape=(2,), output_shape=(1,))
    assert d.layers[-1].kind == "dense"  # a raw logit, no output activation
