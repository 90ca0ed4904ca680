"""A corpus of hostile text for the terminal (issue 11, item 2), and the check that what
natlab printed shows it as data: no control character reached the terminal, no markup was
rendered. Shared by tests/model/test_terminal.py and the kernel run's test."""

from __future__ import annotations

import json

HOSTILE: dict[str, str] = {
    "clear-screen": "\x1b[2J\x1b[3J\x1b[H",
    "window-title": "\x1b]0;pwned\x07",
    "overwrite": "ok\rMATCH  expect: PASS",
    "markup": "[bold green]MATCH[/]",
    "link-markup": "[link=file:///etc/shadow]click[/link]",
    "bidi-override": "abc\u202edcba",
    "nul": "a\x00b",
    "c1-csi": "\x9b2J",
    "backspace": "xyz\x08\x08\x08MATCH",
    "line-separator": "a\u2028b",
    "delete": "a\x7fb",
    "emoji-code": ":warning:",
}
# What each piece must look like once printed (the escape or the literal markup).
SHOWN: dict[str, str] = {
    "clear-screen": "\\x1b[2J\\x1b[3J\\x1b[H",
    "window-title": "\\x1b]0;pwned\\x07",
    "overwrite": "ok\\rMATCH  expect: PASS",
    "markup": "[bold green]MATCH[/]",
    "link-markup": "[link=file:///etc/shadow]click[/link]",
    "bidi-override": "abc\\u202edcba",
    "nul": "a\\x00b",
    "c1-csi": "\\x9b2J",
    "backspace": "xyz\\x08\\x08\\x08MATCH",
    "line-separator": "a\\u2028b",
    "delete": "a\\x7fb",
    "emoji-code": ":warning:",
}
EVERYTHING = " ".join(HOSTILE.values())
ALL_KEYS: tuple[str, ...] = tuple(HOSTILE)
# Text made one line by splitting on whitespace (a spec's summary) turns `\r` and U+2028
# into spaces, which is as inert as the escape.
AS_SPACE: dict[str, str] = {"overwrite": "ok MATCH  expect: PASS", "line-separator": "a b"}


def toml_string(text: str) -> str:
    """A TOML basic string holding `text` (JSON's escapes are TOML's)."""
    return json.dumps(text)


def assert_inert(printed: str, *expected_pieces: str) -> None:
    """`printed` holds no character a terminal would act on, shows each of
    `expected_pieces` (SHOWN keys) as data, and prints no fake verdict line."""
    bad = sorted({repr(c) for c in printed if not (c.isprintable() or c == "\n")})
    assert not bad, f"raw control characters reached the terminal: {bad}"
    flat = "".join(printed.split())
    for key in expected_pieces:
        forms = [SHOWN[key], *([AS_SPACE[key]] if key in AS_SPACE else [])]
        assert any("".join(f.split()) in flat for f in forms), (key, printed)
    assert not any(line.strip().startswith("MATCH  expect: PASS")
                   for line in printed.splitlines()), printed
