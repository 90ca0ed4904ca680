"""The walls between the rooms (pyproject's [tool.importlinter] contracts, docs/walls.md):
they hold on today's tree, they catch a violation of each kind, and the rootless commands
load nothing of the kernel side in a fresh interpreter."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
KERNEL_SIDE = ("mininet", "scapy", "pyroute2", "topologies.mininet_net", "topologies.hostexec",
               "topologies.names", "topologies.sweep", "experiments.kernel",
               "experiments.session", "experiments.shell")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"),
                           "--no-cache"], capture_output=True, text=True, cwd=tree,
                          timeout=120, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def test_the_walls_hold() -> None:
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    ("nat/tuple.py", "import experiments.spec", "The model (nat) is pure"),
    ("nat/packet.py", "import rich", "The model (nat) is pure"),
    ("experiments/judging/compare.py", "import experiments.kernel.run", "Rootless rooms"),
    ("experiments/records/report.py", "import topologies.names", "Rootless rooms"),
    ("experiments/model_config.py", "import experiments.session", "Rootless rooms"),
    ("experiments/kernel/capture.py", "import experiments.judging.compare",
     "The kernel side knows no verdict"),
    ("topologies/description.py", "import topologies.hostexec",
     "Topology data knows no namespaces"),
    ("experiments/kernel/traffic.py", "import mininet.net", "Only the Mininet adapter"),
    ("experiments/plan.py", "import experiments.kernel.traffic", "Rootless rooms"),
    ("experiments/kernel/protocol.py", "import nat.packet", "The agent and its protocol"),
    ("experiments/kernel/agent.py", "import experiments.spec", "The agent and its protocol"),
])
def test_a_violation_is_caught(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = tmp_path / "tree"
    for part in ("nat", "topologies", "experiments"):
        shutil.copytree(ROOT / part, tree / part,
                        ignore=shutil.ignore_patterns("__pycache__", "specs"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    target = tree / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    proc = _lint(tree)
    assert proc.returncode != 0
    report = " ".join(proc.stdout.split())   # contract names may wrap
    parts = re.split(r" (KEPT|BROKEN)\b", report)    # name, verdict, name, verdict, ...
    verdicts = list(zip(parts[0::2], parts[1::2], strict=False))
    assert any(contract in name and v == "BROKEN" for name, v in verdicts), report


def test_rootless_commands_load_no_kernel_side() -> None:
    """`natlab model`, `list`, `check` and `judge` work without root and without Mininet: none
    of them imports the kernel side or the namespace runtime (checked in a fresh interpreter,
    on a golden bundle for `judge`)."""
    golden = ROOT / "tests" / "model" / "golden" / "seed-dnat-udp"
    code = (
        "import sys, io, contextlib\n"
        "from experiments.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['model', 'seed-dnat-udp']) == 0\n"
        "    assert main(['list']) == 0\n"
        "    assert main(['check', '--model', 'seed-snat-tcp']) == 0\n"
        f"    assert main(['judge', {str(golden)!r}]) == 0\n"
        f"bad = {KERNEL_SIDE!r}\n"
        "print(sorted(m for m in sys.modules if m.startswith(bad)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _modules(package: str) -> list[str]:
    return sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                  for p in (ROOT / package).rglob("*.py"))


def test_every_model_module_imports_first() -> None:
    """Each module of the model imported first, in a fresh interpreter: an import cycle (which
    depends on who is imported first) shows up here rather than in a user's command."""
    code = ("import importlib, os, sys\n"
            "for name in sys.argv[1:]:\n"
            "    pid = os.fork()\n"
            "    if pid == 0:\n"
            "        try:\n"
            "            importlib.import_module(name)\n"
            "        except Exception as e:\n"
            "            print(name, type(e).__name__, e)\n"
            "            os._exit(1)\n"
            "        os._exit(0)\n"
            "    os.waitpid(pid, 0)\n")
    modules = _modules("nat") + _modules("experiments")
    proc = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout == "", proc.stdout + proc.stderr
