"""Text from a spec or a bundle, shown on a terminal as data: the one escaping function.

A spec's description, names, rules (echoed in a tool's error), payloads and expectations, and
everything a bundle holds, come from other people. Printed as they are, an ESC sequence could
clear the screen or move the cursor, a `\\r` overwrite a line, a bidi override (U+202E) turn
text around, and Rich markup such as `[bold green]MATCH[/]` print a verdict natlab never
gave. `literal()` is what every such string goes through before natlab prints it:

- every character that is not printable -- C0 and C1 controls, DEL, NUL, format characters
  such as U+202E and U+200B, line and paragraph separators -- is shown as its Python escape
  (`\\x1b`, `\\r`, `\\x00`, `\\u202e`), so the terminal receives only printable characters;
- with `markup=True` (the text goes into a Rich renderable that reads markup: a table cell, a
  `Console.print` string), Rich markup is escaped (`\\[bold]`) and so printed as written.

Printable text, including non-ASCII letters and arrows, is left as it is.
"""

from __future__ import annotations

from rich.markup import escape


def _visible(c: str) -> str:
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x100:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(c, f"\\x{code:02x}")
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def literal(text: object, *, markup: bool = True, newlines: bool = False) -> str:
    """`text` (str() of it) as the terminal must show it: non-printable characters escaped
    visibly, and Rich markup escaped when `markup` (the text goes where Rich reads markup).
    With `newlines`, line breaks are kept (a multi-line block; each line is escaped)."""
    s = str(text)
    if newlines:
        shown = "\n".join("".join(_visible(c) for c in line) for line in s.split("\n"))
    else:
        shown = "".join(_visible(c) for c in s)
    return escape(shown) if markup else shown
