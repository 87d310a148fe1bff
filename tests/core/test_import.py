"""`import gankit` (and the core modules, and the built-in plugins) load no framework."""

import subprocess
import sys


def test_import_gankit_loads_no_framework():
    code = (
        "import sys, gankit, gankit.cli, gankit.training, gankit.checkpoint, gankit.config;"
        "import gankit_plugins.losses, gankit_plugins.regularizers, gankit_plugins.architectures, gankit_plugins.datasets;"
        "import gankit_torch.plugin, gankit_tensorflow.plugin;"
        "gankit.get_registry();"
        "print(','.join(m for m in ('torch', 'tensorflow', 'keras', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_sources_never_import_a_framework():
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^\s*(import|from)\s+(torch|tensorflow|keras)\b", re.M)
    offenders = [str(p) for d in ("gankit", "plugins") for p in (root / d).rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
