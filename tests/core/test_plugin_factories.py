"""A third-party plugin whose factory raises, or returns the wrong kind of object, is one
line naming the plugin and its distribution (a PluginError), not an internal error;
gankit's own errors raised by a plugin pass through unchanged."""

import sys
import textwrap

import pytest

import gankit
from gankit.assembly import build_architecture, build_plugin
from gankit.config import PluginChoice
from gankit.errors import ConfigError, DataError, GankitError, PluginError
from gankit.plugins import Registry


class Boom(RuntimeError):
    pass


BUILTINS = Registry.from_environment({"GANKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})


def ring8():
    record = BUILTINS.get("dataset", "ring8").record
    return record.factory(record.params(), seed=0)


def _raise(exc):
    def factory(*args, **kwargs):
        raise exc

    return factory


def _returns(value):
    return lambda *args, **kwargs: value


class Plugin:
    """A plugin object registering one record of each kind given."""

    def __init__(self, **records):
        self.records = records

    @gankit.hookimpl
    def gankit_register_losses(self):
        return self.records.get("loss", [])

    @gankit.hookimpl
    def gankit_register_regularizers(self):
        return self.records.get("regularizer", [])

    @gankit.hookimpl
    def gankit_register_architectures(self):
        return self.records.get("architecture", [])

    @gankit.hookimpl
    def gankit_register_datasets(self):
        return self.records.get("dataset", [])

    @gankit.hookimpl
    def gankit_register_metrics(self):
        return self.records.get("metric", [])

    @gankit.hookimpl
    def gankit_register_feature_extractors(self):
        return self.records.get("feature_extractor", [])

    @gankit.hookimpl
    def gankit_register_backends(self):
        return self.records.get("backend", [])


def registry(distribution="fake-dist", **records):
    return Registry.from_plugins([Plugin(**records)], distribution=distribution)


RECORDS = {
    "loss": gankit.LossRecord,
    "regularizer": gankit.RegularizerRecord,
    "architecture": gankit.ArchitectureRecord,
    "dataset": gankit.DatasetRecord,
    "metric": gankit.MetricRecord,
    "feature_extractor": gankit.FeatureExtractorRecord,
    "backend": gankit.BackendRecord,
}


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_a_factory_that_raises_is_a_plugin_error_naming_it(kind):
    cause = Boom("boom in init")
    reg = registry(**{kind: [RECORDS[kind](name="broken", factory=_raise(cause))]})
    with pytest.raises(PluginError) as info:
        reg.make(kind, "broken", None)
    msg = str(info.value)
    assert f"the {kind} 'broken'" in msg and "distribution 'fake-dist'" in msg, msg
    assert "Boom: boom in init" in msg and "fix or uninstall the plugin 'fake-dist'" in msg, msg
    assert "\n" not in msg
    assert info.value.__cause__ is cause  # --debug shows the plugin's own traceback


@pytest.mark.parametrize("kind", sorted(RECORDS))
def test_a_factory_returning_the_wrong_object_is_a_plugin_error(kind):
    reg = registry(**{kind: [RECORDS[kind](name="broken", factory=_returns("not a thing"))]})
    with pytest.raises(PluginError, match=rf"the {kind} 'broken' \(plugin .* from distribution 'fake-dist'\) "
                                          r"returned str 'not a thing', not a"):
        reg.make(kind, "broken", None)


def test_a_factory_returning_none_is_refused():
    reg = registry(loss=[gankit.LossRecord(name="nothing", factory=_returns(None))])
    with pytest.raises(PluginError, match=r"returned NoneType None, not a gankit.Loss"):
        reg.make("loss", "nothing", None)


def test_a_factory_calling_sys_exit_is_a_plugin_error():
    reg = registry(loss=[gankit.LossRecord(name="quits", factory=_raise(SystemExit(3)))])
    with pytest.raises(PluginError, match=r"it called sys.exit\(3\)"):
        reg.make("loss", "quits", None)


@pytest.mark.parametrize("error", [ConfigError("loss 'x': gamma must be positive"),
                                   DataError("data file 'a.npy' is missing", hint="check data.params.path")])
def test_gankit_errors_a_plugin_raises_pass_through_unchanged(error):
    reg = registry(loss=[gankit.LossRecord(name="picky", factory=_raise(error))],
                   dataset=[gankit.DatasetRecord(name="picky", factory=_raise(error))])
    for kind in ("loss", "dataset"):
        with pytest.raises(GankitError) as info:
            reg.make(kind, "picky", None)
        assert info.value is error


def test_builtin_factories_are_not_wrapped():
    """A failure of gankit's own plugin is gankit's bug: it stays an internal error."""
    reg = registry(distribution="gankit", loss=[gankit.LossRecord(name="buggy", factory=_raise(Boom("bug")))])
    with pytest.raises(Boom):
        reg.make("loss", "buggy", None)


def test_good_plugins_build():
    ring = BUILTINS.get("dataset", "ring8").record
    reg = registry(dataset=[gankit.DatasetRecord(name="ring", factory=ring.factory, params=ring.params)],
                   loss=[gankit.LossRecord(name="hinge2", factory=gankit.Loss)])
    assert build_plugin(reg, "dataset", PluginChoice(name="ring"), seed=1).sample_shape == (2,)
    assert isinstance(build_plugin(reg, "loss", PluginChoice(name="hinge2")), gankit.Loss)


def _mlp(params, role, input_shape, output_shape, **kwargs):
    return gankit.NetSpec(input_shape=input_shape, layers=[gankit.Dense(units=output_shape[0])])


def test_assembly_names_the_role_of_a_broken_architecture():
    ring = ring8()
    reg = registry(architecture=[gankit.ArchitectureRecord(name="badarch", factory=_returns("not a spec")),
                                 gankit.ArchitectureRecord(name="crash", factory=_raise(KeyError("width"))),
                                 gankit.ArchitectureRecord(name="mlp", factory=_mlp)])
    with pytest.raises(PluginError, match=r"the generator architecture 'badarch' .* returned str 'not a spec', "
                                          r"not a gankit.NetSpec"):
        build_architecture(reg, PluginChoice(name="badarch"), ring, role="generator", input_shape=(4,),
                           output_shape=(2,))
    with pytest.raises(PluginError, match=r"the discriminator architecture 'crash' .* KeyError: 'width'"):
        build_architecture(reg, PluginChoice(name="crash"), ring, role="discriminator", input_shape=(2,),
                           output_shape=(1,))
    spec = build_architecture(reg, PluginChoice(name="mlp"), ring, role="generator", input_shape=(4,),
                              output_shape=(2,))
    assert tuple(spec.output_shape) == (2,)


def test_an_architecture_refusing_its_shapes_is_still_a_config_error():
    ring = ring8()
    reg = registry(architecture=[gankit.ArchitectureRecord(name="picky", factory=_raise(ValueError("needs 3 channels")))])
    with pytest.raises(ConfigError, match=r"generator 'picky': needs 3 channels") as info:
        build_architecture(reg, PluginChoice(name="picky"), ring, role="generator", input_shape=(4,),
                           output_shape=(2,))
    assert not isinstance(info.value, PluginError)


# -- the command line, with an installed (fake) distribution -------------------------------
BROKEN_LOSS = '''
import gankit

class Boom(gankit.Loss):
    def __init__(self, params=None):
        raise RuntimeError("boom in init")

@gankit.hookimpl
def gankit_register_losses():
    return [gankit.LossRecord(name="boom", factory=Boom)]
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    import gankit.plugins

    root = tmp_path / "site"
    root.mkdir()
    (root / "fake_boom.py").write_text(textwrap.dedent(BROKEN_LOSS))
    info = root / "fake_boom-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-boom\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[gankit]\nfake_boom = fake_boom\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(gankit.plugins, "_REGISTRY", None)
    yield tmp_path
    gankit.plugins._REGISTRY = None
    sys.modules.pop("fake_boom", None)


@pytest.mark.parametrize("debug", [False, True])
def test_cli_train_with_a_broken_loss_is_one_line_exit_2(site, capsys, debug):
    from gankit.cli import main

    args = ["train", "--preset", "ring8", "-q", "--set", "loss.name=boom", "--set", "training.steps=1",
            "--set", f"output.dir={site}", "--set", "output.name=run"]
    if debug:  # --debug re-raises, and the plugin's own exception is the cause
        with pytest.raises(PluginError) as info:
            main(["--debug", *args])
        assert isinstance(info.value.__cause__, RuntimeError)
        return
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["error: the loss 'boom' (plugin 'fake_boom' from distribution 'fake-boom') failed to build: "
                     "RuntimeError: boom in init (fix or uninstall the plugin 'fake-boom', or skip it with "
                     "GANKIT_DISABLE_PLUGINS=fake-boom)"], err
    assert not (site / "run" / "checkpoint.json").exists()
