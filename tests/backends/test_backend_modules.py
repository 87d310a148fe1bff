"""Backends mirror each other (Keras 3 style): the same modules, the same public function
names and signatures, and each declares the layer kinds it builds in one table that
covers the vocabulary of gankit.nets.

``KNOWN_DIFFERENCES`` lists where the backends still differ, each with the reason; it
may only shrink: a difference that disappears (or a new one) fails the test until the
list says so. The only entries left are optional features of the contract that a backend
does not provide; framework-only helpers are private or live in framework-only modules
(``gankit_torch.streams``, ``.layout``, ``.ddp``; ``gankit_tensorflow.gpus``, ``.strategy``),
which the comparison does not cover.
"""

import importlib
import importlib.util
import inspect

import pytest

from gankit import nets
from gankit.backend_contract import MODULES

BACKENDS = [b for b in ("torch", "tensorflow", "jax") if importlib.util.find_spec(b) is not None]

#: (module, function) -> why the backends differ there. Shrink it; never grow it silently.
KNOWN_DIFFERENCES = {
    # Each entry is a documented optional feature of gankit.backend_contract that one backend lacks.
    ("distributed", "all_reduce_mean"): "data-parallel training is optional (BackendSpec.distributed): jax trains "
                                        "in one process and refuses more in one line, so it has nothing to average",
    ("export", "export_generator"): "ONNX export is optional (BackendSpec.export_onnx): jax has no ONNX exporter",
}


def public_functions(backend, module):
    mod = importlib.import_module(f"gankit_{backend}.{module}")
    return {name: tuple(inspect.signature(fn).parameters) for name, fn in vars(mod).items()
            if inspect.isfunction(fn) and not name.startswith("_") and fn.__module__ == mod.__name__}


@pytest.fixture(scope="module")
def functions():
    if len(BACKENDS) < 2:
        pytest.skip("needs two backends")
    return {m: {b: public_functions(b, m) for b in BACKENDS} for m in MODULES}


def test_every_backend_has_the_contracts_modules_and_names():
    for backend in BACKENDS:
        for module, names in MODULES.items():
            mod = importlib.import_module(f"gankit_{backend}.{module}")
            missing = [n for n in names if not hasattr(mod, n)]
            assert not missing, f"gankit_{backend}.{module} lacks {missing}"


def test_public_functions_have_the_same_names_and_signatures(functions):
    differences = {}
    for module, per_backend in functions.items():
        for name in set().union(*per_backend.values()):
            signatures = {b: per_backend[b].get(name) for b in per_backend}
            if len(set(signatures.values())) > 1:
                differences[(module, name)] = signatures
    if set(BACKENDS) != {"torch", "tensorflow", "jax"}:
        return  # the allow-list is written for all three
    new = {k: v for k, v in differences.items() if k not in KNOWN_DIFFERENCES}
    assert not new, f"backends differ where they did not before (align them, or list why): {new}"
    gone = sorted(k for k in KNOWN_DIFFERENCES if k not in differences)
    assert not gone, f"these no longer differ: remove them from KNOWN_DIFFERENCES: {gone}"


def test_functions_torch_and_tensorflow_agree_on_are_in_jax_too(functions):
    if set(BACKENDS) != {"torch", "tensorflow", "jax"}:
        pytest.skip("needs all three backends")
    for module, per in functions.items():
        shared = {n for n in per["torch"] if per["tensorflow"].get(n) == per["torch"][n]}
        for name in shared - set(per["jax"]):
            assert (module, name) in KNOWN_DIFFERENCES, f"gankit_jax.{module} lacks {name}{per['torch'][name]}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_layer_table_covers_the_vocabulary(backend):
    nn = importlib.import_module(f"gankit_{backend}.nn")
    table = set(nn.SUPPORTED_LAYERS)
    assert not set(nets.LAYER_KINDS) - table, f"{backend} has no builder for {set(nets.LAYER_KINDS) - table}"
    assert not table - set(nets.LAYER_KINDS), f"{backend} lists kinds the vocabulary lacks: {table - set(nets.LAYER_KINDS)}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_kind_missing_from_the_table_is_refused_in_one_line(backend, monkeypatch):
    nn = importlib.import_module(f"gankit_{backend}.nn")
    monkeypatch.setattr(nn, "SUPPORTED_LAYERS", tuple(k for k in nn.SUPPORTED_LAYERS if k != "upsample"))
    if backend == "jax":
        monkeypatch.delitem(nn.LAYERS, "upsample")
    spec = nets.NetSpec(name="up", input_shape=(1, 2, 2), layers=[nets.Upsample()])
    with pytest.raises(NotImplementedError, match=rf"the {backend} backend cannot build layer kind\(s\) \['upsample'\]"):
        nn.build_net(spec)
