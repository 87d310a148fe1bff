"""Config loading and validation: good files in every format, bad files with one clear line."""

import json
import re

import pytest
import yaml

import gankit
from gankit.config import (
    ExperimentConfig,
    apply_overrides,
    load_config,
    preset_names,
    read_preset,
    schema,
)
from gankit.errors import ConfigError

TOML = """
name = "ring"
backend = "torch"
seed = 3
[data]
name = "ring8"
params = { std = 0.02 }
[loss]
name = "least_squares"
params = { a = -1.0 }
[[regularizers]]
name = "r1"
params = { gamma = 1.0 }
[training]
steps = 10
batch_size = 32
n_critic = 2
"""


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.fixture
def as_dict():
    import tomllib

    return tomllib.loads(TOML)


def test_toml_yaml_json_resolve_identically(tmp_path, as_dict):
    t = load_config(write(tmp_path, "c.toml", TOML), environ={})
    y = load_config(write(tmp_path, "c.yaml", yaml.safe_dump(as_dict)), environ={})
    j = load_config(write(tmp_path, "c.json", json.dumps(as_dict)), environ={})
    assert t == y == j
    assert t.loss.params == {"a": -1.0, "b": 1.0, "c": 1.0}  # plugin defaults filled in
    assert t.data.params["std"] == 0.02 and t.data.params["modes"] == 8
    assert t.regularizers[0].params == {"gamma": 1.0}
    assert t.training.n_critic == 2 and t.seed == 3


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates(name):
    cfg = load_config(preset=name, environ={})
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.name == read_preset(name)["name"]


def test_default_is_the_mnist_preset():
    default = load_config(environ={})
    assert default == load_config(preset="mnist", environ={})
    assert default.data.name == "mnist" and default.generator.name == "dcgan"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[training]\nstepz = 3\n", "training.stepz: unknown key"),
        ("bogus = 1\n", "bogus: unknown key"),
        ("[training]\nsteps = -1\n", "training.steps: Input should be greater than 0 (got -1)"),
        ("[training]\nn_critic = 0\n", "training.n_critic"),
        ('device = "tpu"\n', "device"),
        ("[optimizers.generator]\nbetas = [1.5, 0.9]\n", "optimizers.generator.betas"),
        ('[optimizers.generator]\nname = "lion"\n', "optimizers.generator.name"),
        ('[loss]\nname = "nope"\n', "loss.name: unknown loss 'nope'; available: "),
        ('[loss]\nname = "minimax"\nparams = { label_smoothing = 1.5 }\n', "loss.params.label_smoothing"),
        ('[loss]\nname = "hinge"\nparams = { margin = 2 }\n', "loss.params.margin: unknown key"),
        ('[generator]\nname = "resnet9000"\n', "generator.name: unknown architecture 'resnet9000'; available: cdcgan, dcgan, mlp, sngan_resnet"),
        ('[data]\nname = "ring8"\nparams = { std = "wide" }\n', "data.params.std"),
        ('backend = "mxnet"\n', "backend: unknown backend 'mxnet'; available: "),
        ('[training]\ncompile = ["tensorflw"]\n', "training.compile: unknown backend 'tensorflw'; available: "),
        ('[training]\ncompile = ["torch", "torch"]\n', "training.compile: name each backend once"),
        ('[training]\ncompile = "tensorflow"\n', 'training.compile: true, false or a list of backend names, e.g. ["tensorflow"]'),
        ('[training]\ncompile = [3]\n', "training.compile"),
        ('[[regularizers]]\nname = "r1"\n[[regularizers]]\nname = "r1"\n', "regularizer listed twice: r1"),
        ("[optimizers.generator]\nlr = true\n", "optimizers.generator: lr: a boolean is not a number (got True)"),
        ("[latent]\ndim = true\n", "latent: dim: a boolean is not a number"),
        ("[optimizers.discriminator]\nbetas = [false, 0.9]\n", "betas: a boolean is not a number"),
        ("[training]\nthreads = true\n", "threads: a boolean is not a number"),
        ('[generator]\nname = "mlp"\nparams = { hidden = [true] }\n', "generator.params: hidden: a boolean is not a number"),
        ('[data]\nname = "ring8"\nparams = { modes = false }\n', "data.params: modes: a boolean is not a number"),
    ],
)
def test_bad_config_gives_one_clear_line(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "bad.toml", text), environ={})
    line = err.value.one_line()
    assert "\n" not in line
    assert expected in line


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("bad.toml", "[training\nsteps = 1", "cannot be parsed"),
        ("bad.yaml", "a: [1, 2", "cannot be parsed"),
        ("bad.json", "{", "cannot be parsed"),
        ("bad.ini", "x=1", "unknown extension '.ini'"),
        ("list.yaml", "- 1\n- 2\n", "must hold a table of settings"),
    ],
)
def test_unreadable_files(tmp_path, name, text, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, name, text), environ={})


def test_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such/file.toml", environ={})


def test_yaml_is_loaded_safely(tmp_path):
    text = "name: !!python/object/apply:os.system ['echo pwned']\n"
    with pytest.raises(ConfigError, match="cannot be parsed"):
        load_config(write(tmp_path, "evil.yaml", text), environ={})


def test_overrides_parse_values():
    data = apply_overrides({"training": {"steps": 5}}, ["training.steps=7", "backend=tensorflow",
                                                       "generator.params.hidden=[8, 8]", "training.compile=true"])
    assert data == {"training": {"steps": 7, "compile": True}, "backend": "tensorflow",
                    "generator": {"params": {"hidden": [8, 8]}}}


@pytest.mark.parametrize("order", ["name first", "params first"])
def test_switching_plugin_keeps_the_params_set_with_it(order):
    # Another plugin's params start from its defaults plus what the overrides set, whether
    # key by key or as a whole table, before or after the name.
    base = {"generator": {"name": "dcgan", "params": {"base_channels": 32, "style": "paper"}}}
    name, table, key = "generator.name=mlp", 'generator.params={"hidden": [64, 32], "norm": "batch"}', \
        "generator.params.activation=leaky_relu"
    items = [name, table, key] if order == "name first" else [table, key, name]
    assert apply_overrides(base, items)["generator"] == {
        "name": "mlp", "params": {"hidden": [64, 32], "norm": "batch", "activation": "leaky_relu"}}
    # One key at a time, the old plugin's other params are dropped.
    assert apply_overrides(base, [name, key])["generator"] == {"name": "mlp", "params": {"activation": "leaky_relu"}}
    assert apply_overrides(base, [key, name])["generator"] == {"name": "mlp", "params": {"activation": "leaky_relu"}}
    assert apply_overrides(base, [name])["generator"] == {"name": "mlp", "params": {}}
    cfg = load_config(preset="mnist_wgan", environ={}, overrides=[name, table])
    assert cfg.generator.name == "mlp" and cfg.generator.params["hidden"] == [64, 32]
    assert cfg.generator.params["norm"] == "batch"


def test_output_dir_expands_the_home_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_config(preset="ring8", environ={}, overrides=["output.dir=~/runs"]).output.dir == str(tmp_path / "runs")


def test_an_unknown_backend_from_the_environment_names_the_variable():
    with pytest.raises(ConfigError, match="preset 'ring8' with GANKIT_BACKEND=pytorch: backend: unknown backend"):
        load_config(preset="ring8", environ={"GANKIT_BACKEND": "pytorch"})
    assert load_config(preset="ring8", environ={"GANKIT_BACKEND": "pytorch"}, overrides=["backend=torch"]).backend == "torch"


@pytest.mark.parametrize("name", ["", " x", "x ", "-x", ".x", "a/b"])
def test_experiment_names_that_make_bad_directory_names_are_refused(name):
    with pytest.raises(ConfigError, match="name: the experiment name becomes"):
        load_config(preset="ring8", environ={}, overrides=[f'name={json.dumps(name)}'])


@pytest.mark.parametrize("key", ["training.checkpoint_minutes", "optimizers.generator.lr",
                                 "optimizers.discriminator.clip_weights", "optimizers.generator.weight_decay"])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan"])
def test_non_finite_numbers_are_refused(key, value):
    with pytest.raises(ConfigError, match=f"{key}: Input should be a finite number"):
        load_config(preset="ring8", environ={}, overrides=[f"{key}={value}"])


@pytest.mark.parametrize("overrides, message", [
    (["optimizers.generator.momentum=0.9"], "optimizers.generator.momentum = 0.9 has no effect on adam"),
    (["optimizers.discriminator.name=sgd", "optimizers.discriminator.betas=[0.1, 0.2]"],
     "optimizers.discriminator.betas = (0.1, 0.2) has no effect on sgd"),
    (["optimizers.generator.name=sgd", "optimizers.generator.eps=0.5"], "optimizers.generator.eps = 0.5 has no effect on sgd"),
    (["optimizers.generator.final_lr_fraction=0.5"], "final_lr_fraction = 0.5 has no effect with the constant schedule"),
    (['regularizers=[{"name": "r1", "final_weight_fraction": 0.5}]'],
     "regularizer 'r1': final_weight_fraction = 0.5 has no effect with the constant schedule"),
    (["sampling.drs_percentile=0.5"], "sampling.drs_percentile = 0.5 has no effect with rejection"),
])
def test_settings_without_effect_are_warned_about(overrides, message):
    with pytest.warns(UserWarning, match=re.escape(message)):
        load_config(preset="ring8", environ={}, overrides=overrides)


@pytest.mark.parametrize("preset", preset_names())
def test_presets_and_effective_settings_warn_of_nothing(preset):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(preset=preset, environ={})
        load_config(preset="ring8", environ={}, overrides=[
            "optimizers.generator.name=sgd", "optimizers.generator.momentum=0.9", "optimizers.discriminator.name=rmsprop",
            "optimizers.discriminator.momentum=0.5", "optimizers.generator.schedule=linear",
            "optimizers.generator.final_lr_fraction=0.1", "sampling.rejection=drs", "sampling.drs_percentile=0.8"])


@pytest.mark.parametrize("item", ["novalue", "=3", "training.steps.x=1", "training..steps=3", "training.=3", ".x=1"])
def test_bad_override(item):
    with pytest.raises(ConfigError):
        apply_overrides({"training": {"steps": 5}}, [item])


@pytest.mark.parametrize("value, compiled_on", [
    ("false", set()), ("true", {"torch", "tensorflow", "jax"}), ('["tensorflow"]', {"tensorflow"}),
    ('["torch", "jax"]', {"torch", "jax"}), ("[]", set()),
])
def test_compile_on_the_backends_named(value, compiled_on):
    training = load_config(preset="mnist_mlp", environ={}, overrides=[f"training.compile={value}"]).training
    assert {b for b in ("torch", "tensorflow", "jax") if training.compiles_on(b)} == compiled_on


def test_backend_precedence(tmp_path):
    path = write(tmp_path, "c.toml", 'backend = "torch"\n')
    assert load_config(path, environ={}).backend == "torch"
    assert load_config(path, environ={"GANKIT_BACKEND": "tensorflow"}).backend == "tensorflow"
    cfg = load_config(path, environ={"GANKIT_BACKEND": "tensorflow"}, overrides=["backend=torch"])
    assert cfg.backend == "torch"


def test_every_field_is_documented():
    def walk(model, seen):
        if model in seen:
            return
        seen.add(model)
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            for arg in (ann, *getattr(ann, "__args__", ())):
                if isinstance(arg, type) and issubclass(arg, gankit.StrictModel):
                    walk(arg, seen)

    walk(ExperimentConfig, set())


def test_every_plugin_params_field_is_documented():
    for entry in gankit.list_plugins():
        for name, field in entry.record.params.model_fields.items():
            assert field.description, f"{entry.kind} {entry.name}: param {name} has no docstring"


def test_schema_is_json_schema():
    s = schema()
    assert s["type"] == "object" and s["additionalProperties"] is False
    assert "training" in s["properties"]
    json.dumps(s)
