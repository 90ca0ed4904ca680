"""What `natlab` prints: conntrack tables, received traffic, journeys, kernel | model.

Rendering only, with rich. The inputs are the plain values the runs produce: conntrack
entries (`nat.entry.Entry`, what both the one `conntrack -L` parser, nat/listing.py, and the
model produce; shown in columns, in nat.listing's words), records of received traffic
(anything with host/proto/src/dst/sport/dport/payload attributes), and differences (anything
with where/field/kernel/model, like `experiments.judging.compare.Diff`). `to_jsonable` turns
the same values into JSON for `--json`.
"""

from __future__ import annotations

import dataclasses
import enum
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from experiments.terminal import literal
from nat.entry import Entry
from nat.listing import PORT_PROTOS, l4_name, render
from nat.tuple import Proto, Tuple

DIFF_STYLE = "bold red"
MISSING = "(none)"


class DiffLike(Protocol):
    """One field-level difference between the kernel and the model."""

    @property
    def where(self) -> str: ...
    @property
    def field(self) -> str: ...
    @property
    def kernel(self) -> str: ...
    @property
    def model(self) -> str: ...


# --- conntrack entries ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConntrackRow:
    """A conntrack entry cut into the columns a person reads."""

    line: str                # the entry as `conntrack -L` prints it (nat.listing.render)
    proto: str
    timeout: str
    state: str
    original: str
    reply: str
    flags: tuple[str, ...]
    extra: tuple[str, ...]   # zone-orig=, zone-reply=, mark=, zone=, use=, id= as printed

    @property
    def key(self) -> str:
        """What pairs a kernel entry with a model entry: protocol and original tuple."""
        return f"{self.proto} {self.original}"


def entry_row(entry: Entry) -> ConntrackRow:
    """One entry in columns. The words are nat.listing's, so the table shows what
    `conntrack -L` prints, and nothing here reads the text form back."""
    flags = (("UNREPLIED",) if entry.unreplied else ()) + (("ASSURED",) if entry.assured else ())
    extra = [f"zone-orig={entry.zone_orig}" if entry.zone_orig is not None else "",
             f"zone-reply={entry.zone_reply}" if entry.zone_reply is not None else "",
             f"mark={entry.mark}", f"zone={entry.zone}" if entry.zone else "",
             f"use={1 if entry.use is None else entry.use}",
             f"id={entry.id}" if entry.id is not None else ""]
    return ConntrackRow(render(entry), l4_name(entry.proto),
                        "" if entry.timeout is None else str(entry.timeout),
                        "" if entry.state is None else entry.state.name,
                        _tuple_text(entry.orig), _tuple_text(entry.reply), flags,
                        tuple(x for x in extra if x))


def _tuple_text(t: Tuple) -> str:
    if t.proto in PORT_PROTOS:
        return f"{t.src}:{t.sport} → {t.dst}:{t.dport}"
    if t.proto == Proto.ICMP:
        return f"{t.src} → {t.dst} type {t.icmp_type} code {t.icmp_code} id {t.icmp_id}"
    return f"{t.src} → {t.dst}"


def _noise(word: str) -> bool:
    """Words every entry has that tell a reader nothing: the default mark, the refcount."""
    return word == "mark=0" or word.startswith("use=")


def conntrack_table(entries: Sequence[Entry], title: str = "conntrack") -> Table:
    """One row per entry: proto, state, timeout, original tuple, reply tuple, flags."""
    table = Table(title=literal(title), title_justify="left", show_lines=False)
    table.add_column("proto")
    table.add_column("state")
    table.add_column("timeout", justify="right")
    table.add_column("original", no_wrap=True)
    table.add_column("reply", no_wrap=True)
    table.add_column("flags")
    for entry in entries:
        row = entry_row(entry)
        cells = (row.proto, row.state, row.timeout, row.original, row.reply,
                 " ".join([*row.flags, *(x for x in row.extra if not _noise(x))]))
        table.add_row(*(literal(c) for c in cells))
    if not entries:
        table.add_row("", "", "", "(no entries)", "", "")
    return table


# --- received traffic ----------------------------------------------------------------------


def received_rows(received: Mapping[str, Sequence[object]] | Iterable[object]
                  ) -> list[tuple[str, str, str, str, str]]:
    """(host, proto, from, to, payload) per record; accepts {host: [records]} or records
    that carry their own `host`."""
    pairs: list[tuple[str, object]] = []
    if isinstance(received, Mapping):
        for host, records in received.items():
            pairs += [(str(host), r) for r in records]
    else:
        pairs = [(str(_get(r, "host", "")), r) for r in received]
    rows = []
    for host, r in pairs:
        proto = str(_get(r, "proto", ""))
        rows.append((host, proto, _endpoint(_get(r, "src"), _get(r, "sport")),
                     _endpoint(_get(r, "dst"), _get(r, "dport")),
                     payload_text(_get(r, "payload")) + _note(r)))
    return rows


def received_table(received: Mapping[str, Sequence[object]] | Iterable[object],
                   title: str = "received") -> Table:
    table = Table(title=literal(title), title_justify="left")
    for name in ("host", "proto", "from", "to", "payload"):
        table.add_column(name)
    rows = received_rows(received)
    for row in rows:
        table.add_row(*(literal(c) for c in row))
    if not rows:
        table.add_row("", "", "", "", "(nothing)")
    return table


def _get(record: object, name: str, default: object = None) -> object:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _endpoint(addr: object, port: object) -> str:
    if addr is None:
        return ""
    return f"{addr}:{port}" if port is not None else str(addr)


def _note(record: object) -> str:
    note = _get(record, "note", "")
    flags = _get(record, "flags")
    shown = f"[{flags}]" if flags is not None else ""
    if note:
        shown += f"  ({note})"
    return shown


def payload_text(payload: object, limit: int = 60) -> str:
    """Payload bytes or text as one short printable line (escapes shown, not interpreted)."""
    if payload is None:
        return ""
    if isinstance(payload, bytes | bytearray):
        text = bytes(payload).decode("utf-8", errors="backslashreplace")
    else:
        text = str(payload)
    text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- kernel | model ------------------------------------------------------------------------


def side_by_side(kernel: Sequence[Entry], model: Sequence[Entry],
                 diffs: Sequence[DiffLike]) -> Table:
    """The kernel's and the model's conntrack entries next to each other, paired by
    original tuple; tokens that differ are highlighted. The field-level differences follow
    in a section of their own."""
    table = Table(title="kernel | model", title_justify="left", show_lines=True)
    table.add_column("entry")
    table.add_column("kernel")
    table.add_column("model")
    kernel_rows = [entry_row(e) for e in kernel]
    model_rows = [entry_row(e) for e in model]
    unpaired = list(model_rows)
    for k in kernel_rows:
        m = next((r for r in unpaired if r.key == k.key), None)
        if m is not None:
            unpaired.remove(m)
        table.add_row(literal(k.key), *_pair_texts(k.line, m.line if m else None))
    for m in unpaired:
        kernel_text, model_text = _pair_texts(None, m.line)
        table.add_row(literal(m.key), kernel_text, model_text)
    if not kernel_rows and not model_rows:
        table.add_row("(no entries)", "", "")
    if diffs:
        table.add_section()
        for d in diffs:
            table.add_row(Text(f"{literal(d.where, markup=False)}\n≠ "
                               f"{literal(d.field, markup=False)}", style="bold"),
                          Text(literal(d.kernel, markup=False), style=DIFF_STYLE),
                          Text(literal(d.model, markup=False), style=DIFF_STYLE))
    return table


def _pair_texts(kernel: str | None, model: str | None) -> tuple[Text, Text]:
    """Both lines with the tokens the other side lacks highlighted."""
    if kernel is None or model is None:
        return (_marked(kernel, set()), _marked(model, set()))
    k_tokens, m_tokens = kernel.split(), model.split()
    return (_marked(kernel, set(k_tokens) - set(m_tokens)),
            _marked(model, set(m_tokens) - set(k_tokens)))


def _marked(line: str | None, differing: set[str]) -> Text:
    if line is None:
        return Text(MISSING, style=DIFF_STYLE)
    text = Text()
    for i, token in enumerate(line.split()):
        if i:
            text.append(" ")
        text.append(literal(token, markup=False), style=DIFF_STYLE if token in differing else "")
    return text


# --- output helpers ------------------------------------------------------------------------


def render_text(renderable: RenderableType, width: int = 160) -> str:
    """A renderable as plain text (no colour), for tests and logs."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def to_jsonable(value: Any) -> Any:
    """Values of natlab's result types as JSON data: dataclasses and pydantic models become
    objects, addresses and paths strings, enums their names, bytes text (or hex if binary)."""
    if isinstance(value, enum.Enum):
        return value.name
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, IPv4Address | IPv4Interface | IPv4Network | Path):
        return str(value)
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return {"hex": bytes(value).hex()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_jsonable(dump(by_alias=True))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, Iterable):
        return [to_jsonable(v) for v in value]
    return str(value)
