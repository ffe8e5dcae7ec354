"""The package's layering (docs/design.md, "Layers"): import-linter's contracts in pyproject.toml.

`lint-imports` (import-linter, pinned in requirements.txt) reads the import graph of tf_biggan,
function-level imports included, and checks that every package imports only the packages listed
below it and that no modules of one package import each other in a cycle. The second test makes
sure the check can fail: a copy of the package with one upward import added breaks the contract.
"""

import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _lint(root: pathlib.Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(root))  # the tf_biggan under `root`, not the installed one
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()",
                           "--no-cache", str(root / "pyproject.toml")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


def test_the_layering_contracts_hold():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout, proc.stdout[-2000:]


def test_an_upward_import_breaks_the_layering(tmp_path):
    shutil.copytree(ROOT / "tf_biggan", tmp_path / "tf_biggan", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    digits = tmp_path / "tf_biggan" / "data" / "digits.py"  # data sits below runs
    digits.write_text(digits.read_text() + "\n\ndef _upward():\n    from tf_biggan.runs import load_run\n\n"
                      "    return load_run\n")
    proc = _lint(tmp_path)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "tf_biggan.data is not allowed to import tf_biggan.runs" in proc.stdout, proc.stdout[-2000:]
    assert "tf_biggan.data.digits -> tf_biggan.runs" in proc.stdout, proc.stdout[-2000:]
