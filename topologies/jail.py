"""The filesystem a rule tool sees: its own program and libraries, nothing of the host.

`nft -f -`, `iptables-restore` and their kin read text that comes from a spec, and nft can be
told to read files (`include "/etc/shadow"`) and print them in its error. `mnexec -a PID`
changes the network namespace only, so such a tool would see every file of the host. Each of
these tools therefore runs under bubblewrap (`bwrap`, Debian package bubblewrap) in a mount
namespace of its own, created for the one call and gone when it exits, whose root is an empty
tmpfs holding only:

- the program, at the path it has on the host (so a multi-call binary such as
  xtables-nft-multi still sees its own name), and the shared libraries `ldd` lists for it,
  every one bound read-only;
- for the iptables tools, their extension directory (`xtables/*.so`, loaded with dlopen) and
  those libraries' own libraries, read-only;
- for iptables-legacy, the one file `/proc/net/ip_tables_names` of its network namespace
  (iptables-legacy-save learns from it which tables exist), and no other part of /proc;
- `/etc/protocols` and `/etc/services` read-only (the public name tables behind `-p gre` or
  `dport ssh`), `/dev/null`, and an empty writable `/run` (iptables-legacy's lock file);
- when the command names `/dev/stdin` (`iptables-restore-translate -f /dev/stdin`, which
  cannot read a pipe), the call's standard input copied into the read-only file `/stdin`,
  named instead (there is no /proc for /dev/stdin to point into).

No `/proc`, `/sys`, `/etc/passwd`, home or work directory exists in there, so a path in a
ruleset names nothing of the host. The tool keeps only CAP_NET_ADMIN and CAP_NET_RAW (it
needs nothing else to talk netlink to its namespace's kernel), gets a minimal environment
(PATH, LC_ALL=C and the run's mark), a new session (no terminal to write to) and dies with
its parent. The network namespace is the one the caller's `mnexec -a PID` joined.

The library closure of a program is read once per process: `ldd` for the program (about 10
ms), the ELF headers themselves for the iptables extensions (120 files, a few milliseconds).
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable, Sequence

BWRAP = "bwrap"
# Tables the tools may look names up in: public, and the same on every Debian machine.
NAME_TABLES: tuple[str, ...] = ("/etc/protocols", "/etc/services")
XTABLES_DIRS: tuple[str, ...] = ("/usr/lib/x86_64-linux-gnu/xtables", "/usr/lib/xtables",
                                 "/lib/xtables")
# The programs that load or read rules and tables, and the ones that must see no host file.
JAILED_PROGRAMS: frozenset[str] = frozenset({
    "nft", "iptables-restore", "iptables-save", "iptables-legacy-restore",
    "iptables-legacy-save", "iptables-restore-translate", "conntrack",
})
STDIN_FILE = "/stdin"
# Where the dynamic loader looks for a library named without a path (Debian's multiarch).
LIBRARY_DIRS: tuple[str, ...] = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu",
                                 "/lib64", "/usr/lib64", "/lib", "/usr/lib")


class JailError(Exception):
    """A program cannot be jailed: it is not installed, or its libraries cannot be listed."""


def _ldd(paths: Sequence[str]) -> list[str]:
    """Every library (and the dynamic loader) `ldd` lists for `paths`, as the paths they are
    loaded from."""
    proc = subprocess.run(["ldd", *paths], capture_output=True, timeout=30,
                          env={"PATH": os.defpath, "LC_ALL": "C"})
    libs: list[str] = []
    for line in proc.stdout.decode(errors="replace").splitlines():
        words = line.split()
        if "=>" in words and len(words) > words.index("=>") + 1:
            target = words[words.index("=>") + 1]
            if target.startswith("/"):
                libs.append(target)
        elif words and words[0].startswith("/") and not words[0].endswith(":"):
            libs.append(words[0])
    if proc.returncode != 0 and not libs:
        raise JailError(f"ldd {' '.join(paths)} failed: "
                        + " ".join(proc.stderr.decode(errors='replace').split()))
    return libs


def _needed(path: str) -> list[str]:
    """The DT_NEEDED names of a 64-bit little-endian ELF object (its .dynamic section),
    read directly: ldd runs the dynamic loader once per file, 10 ms each, too slow for the
    120 iptables extensions. [] for anything else."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    if data[:6] != b"\x7fELF\x02\x01":
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum) if shoff + (i + 1) * shentsize <= len(data)]
    names: list[str] = []
    for _, kind, _, _, offset, size, link, _, _, entsize in sections:
        if kind != 6 or link >= len(sections):            # SHT_DYNAMIC, its string table
            continue
        strtab = sections[link][4]
        for pos in range(offset, offset + size, entsize or 16):
            tag, value = struct.unpack_from("<qQ", data, pos)
            if tag == 0:                                  # DT_NULL
                break
            if tag == 1:                                  # DT_NEEDED
                end = data.index(b"\0", strtab + value)
                names.append(data[strtab + value:end].decode(errors="replace"))
    return names


def _closure(objects: Iterable[str], known: dict[str, str]) -> list[str]:
    """Library paths the `objects` need, directly or not, beyond `known` (name -> path)."""
    found: list[str] = []
    todo = list(objects)
    while todo:
        for name in _needed(todo.pop()):
            if name in known:
                continue
            where = next((os.path.join(d, name) for d in LIBRARY_DIRS
                          if os.path.exists(os.path.join(d, name))), None)
            known[name] = where or ""
            if where is not None:
                found.append(where)
                todo.append(where)
    return found


@functools.cache
def binds_for(program: str) -> tuple[str, ...]:
    """The bwrap arguments that place `program` (a name on PATH or a path) and everything it
    loads into an empty root. Cached: the answer does not change while natlab runs."""
    where = program if "/" in program else shutil.which(program)
    if where is None:
        raise JailError(f"{program} not found on PATH")
    where = os.path.abspath(where)
    real = os.path.realpath(where)
    libs = _ldd([real])
    extra_dirs: list[str] = []
    if os.path.basename(real).startswith("xtables-"):
        known = {os.path.basename(lib): lib for lib in libs}
        for d in XTABLES_DIRS:
            if os.path.isdir(d) and d not in extra_dirs:
                extra_dirs.append(d)
                libs += _closure(sorted(glob.glob(os.path.join(d, "*.so"))), known)
    args: list[str] = ["--ro-bind", real, where]
    seen = {where}
    for lib in libs:
        if lib not in seen:
            seen.add(lib)
            args += ["--ro-bind", os.path.realpath(lib), lib]
    for d in extra_dirs:
        args += ["--ro-bind", d, d]
    if os.path.basename(real).startswith("xtables-legacy"):
        # iptables-legacy-save lists the tables the namespace holds from this one file.
        args += ["--ro-bind-try", "/proc/self/net/ip_tables_names", "/proc/net/ip_tables_names"]
    for table in NAME_TABLES:
        if os.path.isfile(table):
            args += ["--ro-bind", table, table]
    return tuple(args)


def is_jailed(argv: Sequence[str]) -> bool:
    """Whether `argv` runs one of the programs that must see no host file."""
    return bool(argv) and os.path.basename(str(argv[0])) in JAILED_PROGRAMS


def wrap(argv: Sequence[str]) -> list[str]:
    """`argv` as a bubblewrap command line that runs it in an empty filesystem (see above).
    The caller runs the result in the host's network namespace (`mnexec -a PID ...`)."""
    args = [str(a) for a in argv]
    if not args:
        raise JailError("an empty command")
    program = args[0]
    full = [BWRAP, "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--cap-add", "CAP_NET_ADMIN", "--cap-add", "CAP_NET_RAW",
            *binds_for(program),
            "--dev-bind", "/dev/null", "/dev/null", "--tmpfs", "/run", "--chdir", "/"]
    if "/dev/stdin" in args[1:]:
        full += ["--ro-bind-data", "0", STDIN_FILE]
        args = [args[0], *(STDIN_FILE if a == "/dev/stdin" else a for a in args[1:])]
    where = program if "/" in program else shutil.which(program)
    return [*full, "--", os.path.abspath(where or program), *args[1:]]


def env(run_id: str | None, marker: str) -> dict[str, str]:
    """The whole environment of a jailed tool: nothing of natlab's own."""
    out = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    if run_id is not None:
        out[marker] = run_id
    return out
