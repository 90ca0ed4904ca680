"""The fields of a bundle's JSON files, checked one by one before anything uses them.

`experiments.records.safe_read` gets the bytes and the JSON out of a bundle safely; this module
turns that JSON into the values `natlab judge` works with (`Observed`, `WirePacket`, the
recorded verdict document), refusing a wrong type, a number out of range, NaN or Infinity, a
bad address or hex string, a conntrack line or sysctl the model cannot read, with a
`BundleError` that names the file and the field (`observed.json: received[2].sport`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, TypeVar

from experiments.bundle_format import MAX_PACKET_LINES, format_problem
from experiments.observed import Moment, Observed, Received, Snapshot, WirePacket
from experiments.records.safe_read import BundleError, parse_json
from nat.listing import ListingError, parse_line
from nat.sysctl import Sysctls

T = TypeVar("T")
HASH_RE = re.compile(r"[0-9a-f]{64}")


class Fields:
    """Checks on one JSON document of one bundle file; `where` is the field's path."""

    def __init__(self, bundle: Path, file: str) -> None:
        self.bundle = bundle
        self.file = file

    def fail(self, where: str, message: str) -> BundleError:
        return BundleError(self.bundle, self.file, where, message)

    def obj(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"expected a JSON object, got {_what(value)}")
        return value

    def key(self, obj: dict[str, Any], key: str, where: str) -> Any:
        if key not in obj:
            raise self.fail(_join(where, key), "missing")
        return obj[key]

    def array(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(where, f"expected a JSON list, got {_what(value)}")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.fail(where, f"expected a string, got {_what(value)}")
        return value

    def opt_text(self, value: Any, where: str) -> str | None:
        return None if value is None else self.text(value, where)

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(where, f"expected a number, got {_what(value)}")
        if isinstance(value, int) and abs(value) > 2**53:
            raise self.fail(where, "number out of range")
        if not math.isfinite(value):
            raise self.fail(where, "not a finite number")
        return float(value)

    def port(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise self.fail(where, f"expected a port number 0..65535 or null, got "
                            f"{_what(value)}")
        return value

    def hex(self, value: Any, where: str) -> bytes:
        try:
            return bytes.fromhex(self.text(value, where))
        except ValueError:
            raise self.fail(where, "not a hex string") from None

    def ipv4(self, value: Any, where: str) -> IPv4Address:
        try:
            return IPv4Address(self.text(value, where))
        except ValueError:
            raise self.fail(where, "not an IPv4 address") from None

    def items(self, value: Any, where: str, each: Callable[[Any, str], T]) -> tuple[T, ...]:
        return tuple(each(v, f"{where}[{i}]") for i, v in enumerate(self.array(value, where)))

    def texts(self, value: Any, where: str) -> tuple[str, ...]:
        return self.items(value, where, self.text)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _what(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --- meta.json ---------------------------------------------------------------------------------


def meta_fields(bundle: Path, meta: Any) -> tuple[str, str]:
    """(backend, spec_hash) of meta.json, after its format is checked."""
    f = Fields(bundle, "meta.json")
    obj = f.obj(meta, "")
    problem = format_problem(f.key(obj, "format", ""))
    if problem is not None:
        raise f.fail("format", f"not a bundle this natlab can read: {problem}")
    backend = f.text(f.key(obj, "backend", ""), "backend")
    digest = f.text(f.key(obj, "spec_hash", ""), "spec_hash")
    if HASH_RE.fullmatch(digest) is None:
        raise f.fail("spec_hash", "not a sha256 hex digest")
    return backend, digest


# --- packets.jsonl -----------------------------------------------------------------------------


def packets(bundle: Path, text: str) -> tuple[WirePacket, ...]:
    """packets.jsonl: one packet a line, at most MAX_PACKET_LINES lines."""
    lines = text.split("\n", MAX_PACKET_LINES + 1)
    if len(lines) > MAX_PACKET_LINES + 1 or (len(lines) == MAX_PACKET_LINES + 1 and lines[-1]):
        raise BundleError(bundle, "packets.jsonl", "", f"more than {MAX_PACKET_LINES} lines")
    f = Fields(bundle, "packets.jsonl")
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"line {n}"
        obj = f.obj(parse_json(bundle, "packets.jsonl", line, where=where), where)
        direction = f.text(f.key(obj, "direction", where), f"{where}.direction")
        if direction not in ("in", "out"):
            raise f.fail(f"{where}.direction", "expected \"in\" or \"out\"")
        out.append(WirePacket(f.number(f.key(obj, "time", where), f"{where}.time"),
                              f.text(f.key(obj, "iface", where), f"{where}.iface"),
                              direction,  # type: ignore[arg-type]
                              f.hex(f.key(obj, "data", where), f"{where}.data")))
    return tuple(out)


# --- observed.json -----------------------------------------------------------------------------


def observed(bundle: Path, doc: Any, wire: tuple[WirePacket, ...]) -> Observed:
    f = Fields(bundle, "observed.json")
    obj = f.obj(doc, "")
    sysctls = {}
    for key, value in f.obj(f.key(obj, "sysctls", ""), "sysctls").items():
        where = f"sysctls.{key}"
        sysctls[key] = f.text(value, where)
        if key.startswith("net.netfilter."):
            try:
                Sysctls.from_mapping({key: sysctls[key]})
            except ValueError as e:
                raise f.fail(where, str(e)) from None
    return Observed(
        kernel_release=f.text(f.key(obj, "kernel_release", ""), "kernel_release"),
        sysctls=sysctls,
        snapshots=f.items(f.key(obj, "snapshots", ""), "snapshots",
                          lambda v, w: _snapshot(f, v, w)),
        packets=wire,
        received=f.items(obj.get("received", []), "received",
                         lambda v, w: _received(f, v, w)),
        incomplete_steps=f.texts(obj.get("incomplete_steps", []), "incomplete_steps"),
        ruleset_fed=f.opt_text(obj.get("ruleset_fed"), "ruleset_fed"),
        error=f.opt_text(obj.get("error"), "error"),
        moments=f.items(obj.get("moments", []), "moments", lambda v, w: _moment(f, v, w)),
    )


def _moment(f: Fields, value: Any, where: str) -> Moment:
    obj = f.obj(value, where)
    step = f.number(f.key(obj, "step", where), f"{where}.step")
    if step != int(step) or step < 0:
        raise f.fail(f"{where}.step", "not a step index")
    return Moment(int(step), f.number(f.key(obj, "time", where), f"{where}.time"),
                  f.opt_text(obj.get("fed"), f"{where}.fed"))


def _snapshot(f: Fields, value: Any, where: str) -> Snapshot:
    obj = f.obj(value, where)
    lines = f.texts(f.key(obj, "lines", where), f"{where}.lines")
    for i, line in enumerate(lines):
        try:
            parse_line(line)
        except ListingError as e:
            raise f.fail(f"{where}.lines[{i}]", f"not a conntrack -L line: {e}") from None
    return Snapshot(f.text(f.key(obj, "name", where), f"{where}.name"),
                    f.number(f.key(obj, "time", where), f"{where}.time"), lines)


def _received(f: Fields, value: Any, where: str) -> Received:
    obj = f.obj(value, where)

    def get(key: str) -> Any:
        return f.key(obj, key, where)

    return Received(
        f.text(get("host"), f"{where}.host"),
        f.number(obj.get("time", 0.0), f"{where}.time"),   # format 1 has no time, no note
        f.text(get("proto"), f"{where}.proto"),
        f.ipv4(get("src"), f"{where}.src"), f.ipv4(get("dst"), f"{where}.dst"),
        f.port(get("sport"), f"{where}.sport"), f.port(get("dport"), f"{where}.dport"),
        f.hex(get("payload"), f"{where}.payload"),
        f.text(obj.get("note", ""), f"{where}.note"),
        # format 3: TCP segments without payload carry their flags
        f.opt_text(obj.get("flags"), f"{where}.flags"))


# --- verdict.json ------------------------------------------------------------------------------


def recorded_verdict(bundle: Path, doc: Any) -> dict[str, Any]:
    """verdict.json as recorded, its shape checked (the values are compared, not trusted)."""
    f = Fields(bundle, "verdict.json")
    obj = f.obj(doc, "")
    f.text(f.key(obj, "name", ""), "name")
    f.text(f.key(obj, "verdict", ""), "verdict")
    for i, d in enumerate(f.array(f.key(obj, "diffs", ""), "diffs")):
        f.obj(d, f"diffs[{i}]")
    expect = f.obj(f.key(obj, "expect", ""), "expect")
    f.text(f.key(expect, "status", "expect"), "expect.status")
    f.texts(f.key(expect, "failures", "expect"), "expect.failures")
    f.opt_text(f.key(obj, "xfail", ""), "xfail")
    f.texts(f.key(obj, "notes", ""), "notes")
    # Parts written since runs tell the truth (a failed step, a construct outside the model,
    # an infrastructure failure); older bundles lack them, which meant "none".
    obj.setdefault("warnings", [])
    f.texts(obj["warnings"], "warnings")
    obj.setdefault("unmodeled", None)
    f.opt_text(obj["unmodeled"], "unmodeled")
    obj.setdefault("error", None)
    f.opt_text(obj["error"], "error")
    return obj
