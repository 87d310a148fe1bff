"""The plugin manager, with fake distributions made in a temp dir."""

import sys
import textwrap
import warnings

import pytest

import gankit
from gankit.errors import PluginError
from gankit.plugins import PluginWarning, Registry

GOOD = '''
import gankit

class Doubled(gankit.Loss):
    meta = gankit.LossMeta(family="other", saturating=False, properties=(), formula="2 * hinge", paper="-")
    def discriminator(self, ops, r, f):
        return 2 * (ops.mean(ops.relu(1 - r)) + ops.mean(ops.relu(1 + f)))
    def generator(self, ops, f, r=None):
        return -2 * ops.mean(f)

@gankit.hookimpl
def gankit_register_losses():
    return [gankit.LossRecord(name="{name}", factory=Doubled, description="test loss")]
'''


def make_distribution(root, dist, module, source, ep_name=None):
    """A minimal installed distribution: a module plus a .dist-info with an entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[gankit]\n{ep_name or module} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.startswith("fake_")]:
        del sys.modules[mod]


def test_builtins_register_through_entry_points():
    reg = Registry.from_environment({})
    assert {"torch", "tensorflow"} <= set(reg.names("backend"))
    assert {"minimax", "non_saturating", "wasserstein", "hinge", "least_squares",
            "relativistic", "relativistic_average"} <= set(reg.names("loss"))
    assert {"gradient_penalty", "r1", "r2", "dragan"} <= set(reg.names("regularizer"))
    assert {"ring8", "grid25", "npy"} <= set(reg.names("dataset"))
    assert all(e.distribution == "gankit" for e in reg.entries())


def test_third_party_plugin_loads(site):
    make_distribution(site, "fake-losses", "fake_losses", GOOD.replace("{name}", "doubled_hinge"))
    reg = Registry.from_environment({})
    entry = reg.get("loss", "doubled_hinge")
    assert entry.distribution == "fake-losses" and entry.plugin == "fake_losses"
    ops = gankit.NumpyOps()
    assert entry.record.factory(None).generator(ops, ops.asarray([1.0, 3.0])) == -4.0


def test_broken_plugin_is_a_warning_and_the_rest_works(site):
    make_distribution(site, "fake-broken", "fake_broken", "raise ImportError('needs libfoo')\n")
    make_distribution(site, "fake-losses", "fake_losses", GOOD.replace("{name}", "doubled_hinge"))
    with pytest.warns(PluginWarning, match=r"'fake_broken' from distribution 'fake-broken' failed to import \(ImportError: needs libfoo\)"):
        reg = Registry.from_environment({})
    assert reg.has("loss", "doubled_hinge") and reg.has("loss", "hinge")
    assert [f[0] for f in reg.failed] == ["fake_broken"]


def test_hook_that_raises_or_returns_garbage_is_a_warning(site):
    make_distribution(site, "fake-raises", "fake_raises", """
        import gankit
        @gankit.hookimpl
        def gankit_register_losses():
            raise RuntimeError("boom")
    """)
    make_distribution(site, "fake-garbage", "fake_garbage", """
        import gankit
        @gankit.hookimpl
        def gankit_register_datasets():
            return ["not a record"]
    """)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg = Registry.from_environment({})
    messages = " | ".join(str(w.message) for w in caught if issubclass(w.category, PluginWarning))
    assert "'fake_raises' from distribution 'fake-raises' raised in gankit_register_losses (RuntimeError: boom)" in messages
    assert "'fake_garbage' from distribution 'fake-garbage' returned 'not a record'" in messages
    assert reg.has("dataset", "ring8")


def test_misspelled_hook_is_rejected_with_a_warning(site):
    make_distribution(site, "fake-typo", "fake_typo", """
        import gankit
        @gankit.hookimpl
        def gankit_register_loses():
            return []
    """)
    with pytest.warns(PluginWarning, match="'fake_typo' from distribution 'fake-typo' was rejected"):
        Registry.from_environment({})


def test_name_clash_skips_the_later_plugin_with_a_warning_naming_both(site):
    make_distribution(site, "fake-one", "fake_one", GOOD.replace("{name}", "twin"))
    make_distribution(site, "fake-two", "fake_two", GOOD.replace("{name}", "twin"))
    with pytest.warns(PluginWarning) as caught:
        reg = Registry.from_environment({})
    msg = " | ".join(str(w.message) for w in caught)
    assert "'fake_two' from distribution 'fake-two' registers the loss 'twin'" in msg
    assert "'fake_one' from distribution 'fake-one' registers too" in msg
    assert reg.get("loss", "twin").distribution == "fake-one"  # the first registered wins
    assert reg.has("loss", "hinge") and reg.has("backend", "torch")  # everything else still works
    assert [f[:2] for f in reg.failed] == [("fake_two", "fake-two")]


def test_clash_with_a_builtin_keeps_the_builtin(site):
    make_distribution(site, "fake-hinge", "fake_hinge", GOOD.replace("{name}", "hinge"))
    with pytest.warns(PluginWarning, match="'fake_hinge' from distribution 'fake-hinge' registers the loss 'hinge', "
                                           "which 'losses' from distribution 'gankit' registers too"):
        reg = Registry.from_environment({})
    assert reg.get("loss", "hinge").distribution == "gankit"


def test_a_clashing_plugin_is_skipped_whole(site):
    make_distribution(site, "fake-half", "fake_half", GOOD.replace("{name}", "hinge") + """
@gankit.hookimpl
def gankit_register_datasets():
    return [gankit.DatasetRecord(name="half_data", factory=lambda p, seed=0: None)]
""")
    with pytest.warns(PluginWarning, match="fake_half"):
        reg = Registry.from_environment({})
    assert not reg.has("dataset", "half_data")


def test_deny_list_skips_named_plugins(site):
    make_distribution(site, "fake-one", "fake_one", GOOD.replace("{name}", "twin"))
    make_distribution(site, "fake-two", "fake_two", GOOD.replace("{name}", "twin"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)  # no clash left to warn about
        reg = Registry.from_environment({"GANKIT_DISABLE_PLUGINS": "fake-one"})
    assert reg.get("loss", "twin").distribution == "fake-two"
    assert reg.disabled == [("fake_one", "fake-one")]
    reg = Registry.from_environment({"GANKIT_DISABLE_PLUGINS": " fake_two , jax"})  # entry-point names, built-ins too
    assert reg.get("loss", "twin").distribution == "fake-one"
    assert not reg.has("backend", "jax") and reg.has("backend", "torch")


def test_deny_list_wins_over_the_allow_list(site):
    (site / "fake_module_plugin.py").write_text(GOOD.replace("{name}", "from_module"))
    reg = Registry.from_environment({"GANKIT_PLUGINS": "fake_module_plugin",
                                     "GANKIT_DISABLE_PLUGINS": "fake_module_plugin"})
    assert not reg.has("loss", "from_module")


@pytest.mark.parametrize("call", ["sys.exit()", "sys.exit(0)", "sys.exit('bye')", "raise SystemExit(3)"])
def test_plugin_calling_sys_exit_at_import_is_a_broken_plugin(site, call):
    make_distribution(site, "fake-exit", "fake_exit", f"import sys\n{call}\n")
    with pytest.warns(PluginWarning, match=r"'fake_exit' from distribution 'fake-exit' failed to import \(it called sys.exit"):
        reg = Registry.from_environment({})
    assert reg.has("loss", "hinge")


def test_hook_calling_sys_exit_is_a_broken_plugin(site):
    make_distribution(site, "fake-exit", "fake_exit", """
        import sys, gankit
        @gankit.hookimpl
        def gankit_register_losses():
            sys.exit(0)
    """)
    with pytest.warns(PluginWarning, match=r"raised in gankit_register_losses \(it called sys.exit\(0\)\)"):
        Registry.from_environment({})


@pytest.fixture
def fresh_registry(monkeypatch):
    """The CLI's process-wide registry, loaded anew for this test and dropped after it."""
    import gankit.plugins

    monkeypatch.setattr(gankit.plugins, "_REGISTRY", None)
    yield
    gankit.plugins._REGISTRY = None


def test_cli_plugins_prints_each_warning_once(site, fresh_registry, capsys):
    from gankit.cli import main

    make_distribution(site, "fake-broken", "fake_broken", "raise ImportError('needs libfoo')\n")
    make_distribution(site, "fake-hinge", "fake_hinge", GOOD.replace("{name}", "hinge"))
    assert main(["plugins", "--kind", "loss"]) == 0
    out, err = capsys.readouterr()
    assert err.count("fake_broken") == 1 and err.count("fake_hinge") == 1, err
    assert "needs libfoo" in err and "registers the loss 'hinge'" in err
    assert "hinge" in out


def test_cli_train_survives_a_plugin_that_exits_at_import(site, fresh_registry, capsys, tmp_path):
    from gankit.cli import main

    make_distribution(site, "fake-exit", "fake_exit", "import sys\nsys.exit(0)\n")
    code = main(["train", "--preset", "ring8", "-q", "--set", "training.steps=1", "--set", "training.batch_size=8",
                 "--set", "training.threads=1", "--set", "training.tensorboard=false",
                 "--set", "training.num_samples=16", "--set", f"output.dir={tmp_path}", "--set", "output.name=run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "trained 1 steps" in out and (tmp_path / "run" / "checkpoint.json").is_file()
    assert err.count("fake_exit") == 1 and "sys.exit(0)" in err


def test_disable_autoload_keeps_builtins_only(site):
    make_distribution(site, "fake-losses", "fake_losses", GOOD.replace("{name}", "doubled_hinge"))
    reg = Registry.from_environment({"GANKIT_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert not reg.has("loss", "doubled_hinge")
    assert reg.has("loss", "hinge") and reg.has("backend", "torch")


@pytest.mark.parametrize("allow", ["fake_losses", "fake-losses"])  # entry-point or distribution name
def test_allow_list_loads_named_plugins_when_autoload_is_off(site, allow):
    make_distribution(site, "fake-losses", "fake_losses", GOOD.replace("{name}", "doubled_hinge"))
    make_distribution(site, "fake-other", "fake_other", GOOD.replace("{name}", "other_loss"))
    reg = Registry.from_environment({"GANKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "GANKIT_PLUGINS": allow})
    assert reg.has("loss", "doubled_hinge")
    assert not reg.has("loss", "other_loss")


def test_allow_list_accepts_a_module_path(site):
    (site / "fake_module_plugin.py").write_text(GOOD.replace("{name}", "from_module"))
    reg = Registry.from_environment({"GANKIT_DISABLE_PLUGIN_AUTOLOAD": "1", "GANKIT_PLUGINS": "fake_module_plugin"})
    assert reg.get("loss", "from_module").distribution == "<GANKIT_PLUGINS>"


def test_unknown_name_lists_available():
    reg = Registry.from_environment({})
    with pytest.raises(PluginError, match=r"unknown loss 'nope'; available: .*hinge, least_squares"):
        reg.get("loss", "nope")


def test_missing_framework_gives_install_hint(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tensorflow" else real(name, *a))
    reg = Registry.from_environment({})
    with pytest.raises(gankit.BackendUnavailable, match=r"pip install 'gankit\[tensorflow\]'"):
        reg.backend("tensorflow")


def test_records_validate_their_fields():
    with pytest.raises(ValueError):
        gankit.LossRecord(name="has space", factory=lambda p: None)
    with pytest.raises(TypeError):
        gankit.LossRecord(name="ok", factory=lambda p: None, params=dict)
