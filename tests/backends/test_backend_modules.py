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

import numpy as np
import pytest

from gankit import CheckpointError, nets
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_distributed_init_reports_a_process_group(backend, monkeypatch):
    from gankit.protocol import ProcessGroup

    for var in ("WORLD_SIZE", "TF_CONFIG", "RANK"):
        monkeypatch.delenv(var, raising=False)
    distributed = importlib.import_module(f"gankit_{backend}.distributed")
    group = distributed.init("off", "cpu")
    assert isinstance(group, ProcessGroup) and (group.rank, group.world_size) == (0, 1)
    assert distributed.launcher_world_size() == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_names_agree(backend):
    device = importlib.import_module(f"gankit_{backend}.device")
    assert device.device_name(device.resolve_device("cpu")) == "cpu"


@pytest.mark.parametrize("backend", BACKENDS)
def test_weight_io_is_net_first_and_round_trips(backend):
    nn = importlib.import_module(f"gankit_{backend}.nn")
    spec = nets.NetSpec(name="d", input_shape=(3,), layers=[nets.Dense(units=4), nets.BatchNorm(), nets.Dense(units=1)])
    rng = np.random.default_rng(0)
    weights = {k: rng.normal(size=s).astype(np.float32) for k, s in {**spec.parameter_shapes(), **spec.buffer_shapes()}.items()}
    weights["1.running_var"] = np.abs(weights["1.running_var"]) + 0.5
    net = nn.build_net(spec)
    assert net.spec is spec
    loaded = nn.load_weights(net, weights, prefix="discriminator.")
    if backend != "jax":
        assert loaded is net  # torch and TensorFlow load in place
    out = nn.export_weights(loaded)
    assert set(out) == set(weights)
    for k, v in weights.items():
        np.testing.assert_array_equal(out[k], v)
    with pytest.raises(CheckpointError, match="discriminator.0.weight"):
        nn.check_weights(net, {**weights, "0.weight": np.zeros((9, 9), np.float32)}, prefix="discriminator.")
