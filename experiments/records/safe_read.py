"""Reading files out of an untrusted bundle: only regular files inside the bundle directory,
each read with a bound, JSON nested a bounded depth.

A bundle comes from anywhere (a course page, a mail): a file in it may be a symlink (to
/dev/zero, to /etc/shadow), a FIFO, a device, a directory, a sparse file of gigabytes, or a
real file much larger than any run writes. The rules here, in order:

- the bundle directory is opened once with O_NOFOLLOW | O_DIRECTORY (a bundle path that is
  itself a symlink is refused), and every file below it is reached through that descriptor,
  one path component at a time, each with O_NOFOLLOW: no symlink anywhere below the bundle;
- each file is lstat'ed before it is opened (only regular files are opened at all, so a FIFO
  cannot block and a device is never touched), opened with O_NOFOLLOW | O_NONBLOCK, and the
  open descriptor is fstat'ed again: still a regular file, the same inode, one hard link (a
  second name may be a host file), within its limit;
- at most limit + 1 bytes are read, whatever the file claims its size is;
- text must be UTF-8; JSON may not nest deeper than `MAX_JSON_DEPTH` and may not hold NaN or
  Infinity.

Every refusal is a `BundleError`: one line naming the bundle, the file and (when there is
one) the field.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any

from experiments.bundle_format import FILE_LIMITS, MAX_JSON_DEPTH
from experiments.errors import UserError


class BundleError(UserError):
    """A bundle natlab refuses to read. str() is one line: `BUNDLE: FILE: FIELD: message`."""

    def __init__(self, bundle: Path | str, file: str, field: str, message: str) -> None:
        self.bundle = Path(bundle)
        self.file = file
        self.field = printable(field)
        self.message = printable(" ".join(message.split()))
        where = ": ".join(x for x in (printable(str(bundle)), file, self.field) if x)
        super().__init__(f"{where}: {self.message}")


def printable(text: str) -> str:
    """`text` with every unprintable character escaped: a bundle's bytes (a key, a path, a
    line quoted in a message) never reach the terminal as control characters."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_bundle(bundle: Path) -> int:
    """A descriptor of the bundle directory itself (not through a symlink)."""
    try:
        st = os.lstat(bundle)
    except FileNotFoundError:
        raise BundleError(bundle, "", "", "no such bundle") from None
    except OSError as e:
        raise BundleError(bundle, "", "", f"cannot read the bundle: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise BundleError(bundle, "", "", f"a bundle is a directory; this is {_kind(st.st_mode)}")
    try:
        return os.open(bundle, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        raise BundleError(bundle, "", "", f"cannot open the bundle: {e.strerror}") from None


def read_bytes(bundle: Path, dir_fd: int, name: str, limit: int | None = None) -> bytes:
    """The bytes of `name` (a path relative to the bundle) under the rules above."""
    limit = FILE_LIMITS[name] if limit is None else limit
    parts = name.split("/")
    fds: list[int] = []
    try:
        at = dir_fd
        for part in parts[:-1]:     # subdirectories: each one a real directory, never a link
            at = _open_below(bundle, name, at, part, directory=True)
            fds.append(at)
        fd = _open_below(bundle, name, at, parts[-1], directory=False)
        fds.append(fd)
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(bundle, name, "", f"{_kind(st.st_mode)}, not a regular file")
        if st.st_nlink != 1:    # a hard link may be a host file the bundle's author linked
            raise BundleError(bundle, name, "", f"has {st.st_nlink} hard links; a bundle's "
                              "files have one")
        if st.st_size > limit:
            raise BundleError(bundle, name, "", f"{st.st_size} bytes, over the limit of "
                              f"{limit} bytes for this file")
        chunks: list[bytes] = []
        got = 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise BundleError(bundle, name, "", f"more than the limit of {limit} bytes "
                              "for this file")
        return b"".join(chunks)
    except OSError as e:
        raise BundleError(bundle, name, "", f"cannot read it: {e.strerror or e}") from None
    finally:
        for fd in fds:
            os.close(fd)


def _open_below(bundle: Path, name: str, at: int, part: str, *, directory: bool) -> int:
    if part in ("", ".", ".."):
        raise BundleError(bundle, name, "", "not a plain path inside the bundle")
    try:
        before = os.stat(part, dir_fd=at, follow_symlinks=False)
    except FileNotFoundError:
        raise BundleError(bundle, name, "", "missing from the bundle") from None
    want = stat.S_ISDIR if directory else stat.S_ISREG
    if not want(before.st_mode):
        wanted = "a directory" if directory else "a regular file"
        raise BundleError(bundle, name, "", f"{_kind(before.st_mode)}, not {wanted}")
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(part, flags | (os.O_DIRECTORY if directory else 0), dir_fd=at)
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise BundleError(bundle, name, "", "changed while it was being opened")
    return fd


def decode(bundle: Path, name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BundleError(bundle, name, "", f"not UTF-8 text (byte {e.start})") from None


# A JSON string (its escapes included) or a bracket: the depth is counted over the brackets
# outside strings.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)


def json_depth(text: str) -> int:
    """How deep the brackets of `text` nest (strings skipped); exact for valid JSON."""
    depth = deepest = 0
    for m in _JSON_TOKENS.finditer(text):
        token = m.group()
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number natlab reads")


def parse_json(bundle: Path, name: str, text: str, *, where: str = "") -> Any:
    """One JSON document from a bundle file (`where`: the line, for packets.jsonl)."""
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise BundleError(bundle, name, where, f"JSON nested {depth} deep, over the limit of "
                          f"{MAX_JSON_DEPTH}")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        at = f"{where}, column {e.colno}" if where else f"line {e.lineno}, column {e.colno}"
        raise BundleError(bundle, name, at, f"invalid JSON: {e.msg}") from None
    except (ValueError, RecursionError) as e:     # NaN, an integer of thousands of digits
        raise BundleError(bundle, name, where, f"invalid JSON: {e}") from None


def read_json(bundle: Path, dir_fd: int, name: str) -> Any:
    return parse_json(bundle, name, decode(bundle, name, read_bytes(bundle, dir_fd, name)))
