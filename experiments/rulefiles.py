"""Rule text that would make a tool read (or run) a file of the host, refused before anything.

A spec's rules go to `nft -f -` or `iptables-restore` as text, and both tools know constructs
that name a file of the machine instead of holding the rules themselves:

- nft: `include "PATH"` (a path, a relative path, a glob), wherever it appears outside a
  quoted string or a comment, and whatever a `define` made of the path before it. `define`
  and `$name` themselves only substitute text and read no file.
- iptables-restore: `-M PATH` / `--modprobe=PATH` (the program to run when a kernel module is
  missing: a file that would be executed) and `--object-pinned PATH` (the `bpf` match opening
  a pinned object by its path).

The kernel run also jails these tools in an empty filesystem (`topologies/jail.py`), so such
a path names nothing there; refusing them here gives one clear line naming the spec's file
and field for `natlab run`, `check`, `model` and `up --rules`, before anything is built.
"""

from __future__ import annotations

import re
import shlex
from typing import Literal

Syntax = Literal["nft", "iptables"]

# Short options of iptables that take an argument: the rest of a cluster is that argument.
_TAKES_ARGUMENT = set("ADIRLSFZNXPEtsdiojmgpcwW")
# Options whose argument is free text (a comment may mention `-M`): the next word is skipped.
_FREE_TEXT = {"--comment", "--log-prefix", "--nflog-prefix", "--string", "--hex-string"}
_MODPROBE = "--modprobe"
_PINNED = "--object-pinned"


def _nft_code(text: str) -> str:
    """nft text with quoted strings and comments blanked (line breaks kept), continuation
    lines joined: what is left is what nft reads as keywords."""
    text = text.replace("\\\r\n", "").replace("\\\n", "")
    out: list[str] = []
    in_string = in_comment = False
    for c in text:
        if c == "\n":
            in_comment = False
            out.append(c)
        elif in_comment:
            out.append(" ")
        elif in_string:
            in_string = c != '"'
            out.append(" ")
        elif c == '"':
            in_string = True
            out.append(" ")
        elif c == "#":
            in_comment = True
            out.append(" ")
        else:
            out.append(c)
    return "".join(out)


# The nft keyword as a word of its own: an identifier may hold letters, digits, _ - . and /,
# so `included` or `no-include` are names, not the keyword (strings and comments are blanked).
_INCLUDE = re.compile(r"(?<![\w./-])include(?![\w./-])", re.IGNORECASE)


def _nft_problem(text: str) -> str | None:
    for number, line in enumerate(_nft_code(text).splitlines(), 1):
        if _INCLUDE.search(line):
            return (f"line {number}: `include` would make nft read a file of the machine; "
                    "natlab refuses it: write the rules in the spec itself")
    return None


def _iptables_problem(text: str) -> str | None:
    for number, line in enumerate(text.splitlines(), 1):
        try:
            words = shlex.split(line, comments=False)
        except ValueError:
            words = line.split()
        for i, word in enumerate(words):
            name = word.split("=", 1)[0]
            if i and words[i - 1] in _FREE_TEXT:
                continue
            if len(name) >= 4 and name.startswith("--mo") and _MODPROBE.startswith(name):
                what = f"`{name}` names a program to run"
            elif len(name) >= 4 and name.startswith("--ob") and _PINNED.startswith(name):
                what = f"`{name}` makes iptables open a file by its path"
            elif word.startswith("-") and not word.startswith("--") and _short_m(word[1:]):
                what = "`-M` names a program to run"
            else:
                continue
            return (f"line {number}: {what}; natlab refuses it: the rules must not name "
                    "files of the machine")
    return None


def _short_m(cluster: str) -> bool:
    """Whether a cluster of short options (`-4M`) holds -M before an option's argument."""
    for c in cluster:
        if c == "M":
            return True
        if c in _TAKES_ARGUMENT or not c.isalnum():
            return False
    return False


def file_reading_problem(text: str, syntax: Syntax) -> str | None:
    """Why `text` (nft or iptables-restore syntax) would reach a file of the machine, as one
    line starting with its line number; None when it names none."""
    return _nft_problem(text) if syntax == "nft" else _iptables_problem(text)
