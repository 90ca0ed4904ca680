"""Finding specs: the built-in library (`experiments/specs/`) and what a SPEC argument means.

One home for spec lookup, used by every command that takes specs and by `natlab bench`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from experiments.backends import BackendName
from experiments.errors import UserError
from experiments.spec import Spec, load_spec

BUILTIN_SPECS = Path(__file__).resolve().parent / "specs"


def builtin_spec_paths() -> list[Path]:
    """The library's spec files, sorted by name."""
    return sorted(BUILTIN_SPECS.glob("*.toml"))


def builtin_spec(name: str) -> Path | None:
    """The library's spec called `name` (with or without `.toml`), if there is one."""
    if "/" in name:
        return None
    path = BUILTIN_SPECS / f"{name.removesuffix('.toml')}.toml"
    return path if path.is_file() else None


def resolve_spec_args(args: Sequence[str]) -> list[Path]:
    """SPEC arguments as files: a file, every *.toml of a directory, or a built-in name."""
    paths: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.toml") if p.is_file())
            if not found:
                raise UserError(f"{arg}: no *.toml spec in this directory")
            paths += found
        elif path.is_file():
            paths.append(path)
        elif path.exists():
            raise UserError(f"{arg}: not a regular file or directory")
        else:
            builtin = builtin_spec(arg)
            if builtin is None:
                raise UserError(f"no such spec: {arg!r} is not a file or directory, nor a "
                                "built-in spec (`natlab list` shows those)")
            paths.append(builtin)
    return paths


def load_specs(args: Sequence[str], backend: BackendName | None = None) -> list[Spec]:
    """Load (and validate) every spec before running any: a typo fails fast."""
    return [load_spec(p, backend=backend) for p in resolve_spec_args(args)]
