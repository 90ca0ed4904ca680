"""Dependencies honest: `deptry .` (run by `make test`) passes on the tree, and catches runtime
code that imports a test-only package and a runtime dependency nothing uses."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPTRY = Path(sys.executable).parent / "deptry"


def deptry(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DEPTRY), "--no-ansi", "."], cwd=root, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The project's pyproject.toml and runtime packages, copied."""
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    for pkg in ("nat", "topologies", "experiments"):
        shutil.copytree(REPO / pkg, tmp_path / pkg,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_tree_passes(tree: Path) -> None:
    proc = deptry(tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_runtime_code_importing_a_test_only_package_fails(tree: Path) -> None:
    (tree / "experiments" / "probe.py").write_text("import scapy\n")
    proc = deptry(tree)
    assert proc.returncode != 0
    assert "DEP004 'scapy' imported but declared as a dev dependency" in proc.stderr


def test_an_unused_runtime_dependency_fails(tree: Path) -> None:
    pyproject = tree / "pyproject.toml"
    text = pyproject.read_text()
    assert '    "rich>=13",\n' in text
    pyproject.write_text(text.replace('    "rich>=13",\n', '    "rich>=13",\n    "dpkt",\n', 1))
    proc = deptry(tree)
    assert proc.returncode != 0
    assert "DEP002 'dpkt' defined as a dependency but not used" in proc.stderr
