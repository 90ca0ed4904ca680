"""Checks that run before a kernel command builds anything: root, the programs it will run,
and the folder its bundles go to. The user learns what to install, how to rerun or where to
write before any namespace exists.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from experiments.backends import BACKEND, DEBIAN_PACKAGE, KERNEL_RUN_BINARIES, BackendName
from experiments.errors import MissingBinary, NotRoot, UserError


def require_root(command: str, *, euid: int | None = None) -> None:
    """Raise NotRoot unless running as root (`euid` is for tests)."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise NotRoot(command)


def require_binaries(names: Iterable[str], *, path: str | None = None) -> None:
    """Raise MissingBinary for the first program in `names` that is not on PATH (or `path`)."""
    for name in names:
        if shutil.which(name, path=path) is None:
            raise MissingBinary(name, DEBIAN_PACKAGE.get(name, name))


def kernel_preflight(command: str, backends: Iterable[BackendName]) -> None:
    """Before a kernel command starts anything: root, and every program it will run."""
    require_root(command)
    require_binaries(KERNEL_RUN_BINARIES)
    for backend in dict.fromkeys(backends):
        require_binaries(BACKEND[backend].binaries)


def check_output_folder(results: Path) -> None:
    """Refuse, before anything is built, an output place where no bundle can be written."""
    absolute = Path(os.path.abspath(results))
    for pseudo in ("/proc", "/sys", "/dev"):
        if absolute == Path(pseudo) or Path(pseudo) in absolute.parents:
            raise UserError(f"--out {results}: {pseudo} is not a place for result bundles")
    place = absolute
    while not place.exists():          # the nearest existing folder must take the new ones
        if place.is_symlink():
            raise UserError(f"--out {results}: {place} is a dangling symbolic link")
        place = place.parent
    if not place.is_dir():
        raise UserError(f"--out {results}: {place} exists and is not a directory")
    if not os.access(place, os.W_OK | os.X_OK):
        raise UserError(f"--out {results}: cannot write in {place} (read-only or no "
                        "permission)")
