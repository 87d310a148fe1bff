"""The core's modules depend one way: assembly and streaming below the training loop,
evaluation beside it, and nothing below the loop imports it back (no import cycle)."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "gankit"
#: The entry points: the only core modules that may import the training loop.
ENTRY_POINTS = {"gankit/__init__.py", "gankit/cli.py"}


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every ``gankit`` module a source file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("gankit")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gankit"):
            found.add(node.module)
            if node.module == "gankit":  # from gankit import evaluation, training
                found |= {f"gankit.{a.name}" for a in node.names}
    return found


def test_only_the_entry_points_import_the_training_loop():
    importers = sorted(str(p.relative_to(ROOT.parent)) for p in ROOT.rglob("*.py")
                       if "gankit.training" in _imported_modules(p))
    assert set(importers) <= ENTRY_POINTS, importers


@pytest.mark.parametrize("module", ["gankit.assembly", "gankit.streaming", "gankit.evaluation", "gankit.threads"])
def test_modules_below_the_loop_do_not_import_it(module):
    code = f"import sys, {module}; print('gankit.training' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_checker_sees_function_level_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from gankit.training import build\n\nfrom gankit import evaluation\n")
    assert _imported_modules(source) == {"gankit.training", "gankit", "gankit.evaluation"}
