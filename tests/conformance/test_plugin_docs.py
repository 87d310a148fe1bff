"""What docs/plugins.md and the example plugin's README tell a plugin author works as
written: the pyproject.toml snippet builds, the README's train command runs, the page
names the public API, and the backend-safe ops it documents work under tracing."""

import re
import shlex
import tomllib
from pathlib import Path

import numpy as np
import pytest

import gankit
import gankit.plugins
from gankit.config import apply_overrides, load_config
from gankit.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
PLUGINS_MD = (ROOT / "docs" / "plugins.md").read_text()
EXAMPLE = ROOT / "plugins" / "example-plugin"


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_the_pyproject_snippet_is_a_buildable_project_table():
    (snippet,) = [b for b in _blocks(PLUGINS_MD, "toml") if "[project]" in b]
    data = tomllib.loads(snippet)
    project = data["project"]
    assert project["name"] and project["version"], project  # setuptools refuses a project without a version
    assert data["build-system"]["build-backend"]
    assert project["entry-points"]["gankit"]
    # The same keys as the example distribution that the tests build with pip.
    example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert project["entry-points"]["gankit"] == example["project"]["entry-points"]["gankit"]


def test_the_page_says_what_the_public_plugin_api_is():
    section = PLUGINS_MD.split("## The shape of a plugin", 1)[1].split("## Writing a loss", 1)[0]
    for name in ("gankit.__all__", "gankit.hookspecs", "gankit.conformance"):
        assert name in section, name
    assert "internal" in section
    # Every gankit.<Name> the page uses is exported by gankit.
    used = set(re.findall(r"`gankit\.([A-Z][A-Za-z]+)", PLUGINS_MD))
    assert used and used <= set(gankit.__all__), used - set(gankit.__all__)


def test_the_page_documents_the_loss_families_and_backend_safe_ops():
    for family in ("minimax", "least_squares", "hinge", "wasserstein", "f_divergence", "relativistic", "other"):
        assert f"`{family}`" in PLUGINS_MD, family
    for op in ("batch_size(x)", "cast(x, dtype)", "ops.trace"):
        assert op in PLUGINS_MD, op


def _readme_train_command() -> list[str]:
    readme = (EXAMPLE / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if ln.startswith("gankit train")]
    return shlex.split(line)[1:]


def test_switching_a_plugin_by_name_resets_its_params():
    data = {"generator": {"name": "dcgan", "params": {"base_channels": 48, "style": "paper"}}}
    out = apply_overrides(data, ["generator.name=pyramid_mlp"])
    assert out["generator"] == {"name": "pyramid_mlp", "params": {}}
    # Params set in the same overrides, before or after the name, are kept.
    out = apply_overrides(data, ["generator.params.width=64", "generator.name=pyramid_mlp", "generator.params.depth=2"])
    assert out["generator"]["params"] == {"width": 64, "depth": 2}
    # The same name again keeps the params.
    assert apply_overrides(data, ["generator.name=dcgan"])["generator"] == data["generator"]


def test_a_wrong_param_hint_has_no_doubled_quote():
    with pytest.raises(ConfigError) as info:
        load_config(preset="mnist", overrides=["loss.params.no_such=1"])
    text = info.value.one_line() if hasattr(info.value, "one_line") else str(info.value)
    assert "''s" not in text and "for the parameters of 'non_saturating'" in text


@pytest.fixture
def example_registry(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.setenv("GANKIT_PLUGINS", "gankit_example_plugin")
    monkeypatch.setattr(gankit.plugins, "_REGISTRY", None)
    registry = gankit.get_registry(reload=True)
    assert "focal" in registry.names("loss")
    return registry


def test_the_example_readme_train_command_runs(example_registry, tmp_path):
    pytest.importorskip("torch")
    from gankit.cli import main

    args = _readme_train_command()
    assert "generator.name=pyramid_mlp" in args and "loss.name=focal" in args
    budget = ["-q", "--set", "training.steps=3", "--set", "training.threads=1", "--set", f"output.dir={tmp_path}",
              "--set", "training.num_samples=16", "--set", "training.sample_every=0", "--set", "evaluation.every=0",
              "--set", "backend=torch"]
    assert main(args + budget) == 0
    assert list(tmp_path.rglob("*.safetensors")), sorted(p.name for p in tmp_path.rglob("*"))


def test_batch_size_and_cast_work_where_shape_arithmetic_does_not():
    tf = pytest.importorskip("tensorflow")
    from gankit_tensorflow.ops import TensorFlowOps

    ops = TensorFlowOps(dtype="float64")
    x = np.array([1.0, 2.0, 6.0])
    mean = ops.trace(lambda t: ops.sum(t) / ops.batch_size(t))
    assert float(mean(tf.constant(x))) == 3.0
    cast = ops.trace(lambda t: ops.sum(t) / ops.cast(ops.shape(t)[0], t))
    assert float(cast(tf.constant(x))) == 3.0
    broken = ops.trace(lambda t: ops.sum(t) / ops.shape(t)[0])
    with pytest.raises((TypeError, ValueError)):
        broken(tf.constant(x))  # what the conformance suite now shows a plugin author
    numpy_ops = gankit.NumpyOps()
    assert numpy_ops.sum(x) / numpy_ops.batch_size(x) == 3.0
    assert numpy_ops.cast(x, "float32").dtype == np.float32
