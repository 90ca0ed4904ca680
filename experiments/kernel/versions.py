"""The software a run was made with, for the result's provenance.

A result only means something next to the kernel and tool versions that produced it (the
kernel's NAT port search changed between 6.1 and 6.12; conntrack-tools' output format is
pinned to 1.4.7). Versions are read from the tools themselves; a missing tool is recorded as
missing rather than failing the run.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

MISSING = "missing"

_COMMANDS: dict[str, tuple[str, ...]] = {
    "iptables": ("iptables", "--version"),
    "iptables_legacy": ("iptables-legacy", "--version"),
    "nft": ("nft", "--version"),
    "conntrack": ("conntrack", "--version"),
    "tcpdump": ("tcpdump", "--version"),
    "mininet": ("mn", "--version"),
}


@dataclass(frozen=True)
class Versions:
    kernel: str              # uname -r
    iptables: str
    iptables_legacy: str
    nft: str
    conntrack: str
    tcpdump: str
    mininet: str
    python: str
    natlab: str
    git_commit: str | None   # HEAD of the checkout natlab runs from, if any
    git_dirty: bool | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _first_line(argv: tuple[str, ...]) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return MISSING
    text = (proc.stdout or proc.stderr).decode(errors="replace").strip()
    return text.splitlines()[0].strip() if text else MISSING


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(("git", "-C", str(root), *args), capture_output=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


@functools.cache
def tool_versions() -> dict[str, str]:
    """The tools' version lines, read once per process (they do not change under us)."""
    return {key: _first_line(argv) for key, argv in _COMMANDS.items()}


def machine_facts() -> dict[str, str]:
    """The machine a result was measured on: Python, kernel release (uname -r), CPUs and
    architecture. Bundles (through `Versions`) and `natlab bench` both take them from here."""
    return {
        "python": platform.python_version(),
        "kernel": os.uname().release,
        "cpus": str(os.cpu_count() or "?"),
        "machine": platform.machine(),
    }


def collect_versions() -> Versions:
    """Every version: the tools' (cached), natlab's and the checkout's commit (read now)."""
    tools = tool_versions()
    machine = machine_facts()
    try:
        natlab = importlib.metadata.version("natlab")
    except importlib.metadata.PackageNotFoundError:
        natlab = "unknown"
    root = Path(__file__).resolve().parent.parent
    commit = dirty = None
    if (root / ".git").exists():
        commit = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return Versions(
        kernel=machine["kernel"],
        iptables=tools["iptables"],
        iptables_legacy=tools["iptables_legacy"],
        nft=tools["nft"],
        conntrack=tools["conntrack"],
        tcpdump=tools["tcpdump"],
        mininet=tools["mininet"],
        python=machine["python"],
        natlab=natlab,
        git_commit=commit,
        git_dirty=dirty,
    )
