"""The comparison: a pure function of what the kernel did and what the model predicted.

conntrack: the same set of entries (by original and reply tuple); for each, state, flags,
mark and zone equal, and the timeout within a tolerance of the predicted remaining time.
packets: every packet the gateway sent equals the model's prediction byte for byte, in order
per interface; what the model drops was not sent. Differences come back as field-level `Diff`
values, so a report can show them side by side (kernel | model).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from typing import Literal

from experiments.observed import WirePacket
from nat.entry import Entry
from nat.listing import render
from nat.packet import MalformedPacket, Packet, parse

Verdict = Literal["MATCH", "MISMATCH", "XFAIL", "XPASS", "UNMODELED", "ERROR"]
"""A run's verdict (named apart from nat.status.Status, the conntrack IPS_* bits). UNMODELED: the
kernel ran the spec but the model refuses one of its constructs, so nothing was compared.
ERROR: the run itself failed part-way (a helper died, a command natlab needs failed)."""

# `conntrack -L` shows floor(remaining); the snapshot is taken a little after the model's
# snapshot time and the kernel's jiffies tick at HZ: allow 2 s below and 1 s above.
TIMEOUT_BELOW = 2
TIMEOUT_ABOVE = 1


@dataclass(frozen=True)
class Diff:
    where: str        # "conntrack final: udp 203.0.113.10:37611 -> …", "packet lan0 #1"
    field: str        # "timeout", "assured", "ip.checksum", "missing", …
    kernel: str
    model: str

    def to_json(self) -> dict[str, str]:
        return {"where": self.where, "field": self.field, "kernel": self.kernel,
                "model": self.model}


def _flow_name(e: Entry) -> str:
    o = e.orig
    ports = f":{o.sport} -> {o.dst}:{o.dport}" if o.has_ports else f" -> {o.dst}"
    return f"{_proto_name(o.proto)} {o.src}{ports}"


def _proto_name(proto: int) -> str:
    return {1: "icmp", 6: "tcp", 17: "udp"}.get(proto, str(proto))


def compare_conntrack(label: str, kernel: list[Entry], model: list[Entry]) -> list[Diff]:
    """Entries are matched by (original, reply) tuple; then field by field."""
    diffs: list[Diff] = []
    by_key_model = {e.key(): e for e in model}
    by_key_kernel = {e.key(): e for e in kernel}
    for key, k in by_key_kernel.items():
        m = by_key_model.get(key)
        where = f"conntrack {label}: {_flow_name(k)}"
        if m is None:
            near = next((e for e in model if e.orig == k.orig), None)
            if near is not None:
                diffs.append(Diff(where, "reply tuple", str(k.reply), str(near.reply)))
            else:
                diffs.append(Diff(where, "entry", render(k), "(none)"))
            continue
        for name in ("state", "unreplied", "assured", "mark", "zone", "zone_orig",
                     "zone_reply"):
            kv, mv = getattr(k, name), getattr(m, name)
            if kv != mv:
                diffs.append(Diff(where, name, _show(kv), _show(mv)))
        if k.timeout is not None and m.timeout is not None and not (
                m.timeout - TIMEOUT_BELOW <= k.timeout <= m.timeout + TIMEOUT_ABOVE):
            diffs.append(Diff(where, "timeout", str(k.timeout),
                              f"{m.timeout} (-{TIMEOUT_BELOW}/+{TIMEOUT_ABOVE})"))
    for key, m in by_key_model.items():
        if key not in by_key_kernel and not any(e.orig == m.orig for e in kernel):
            diffs.append(Diff(f"conntrack {label}: {_flow_name(m)}", "entry", "(none)",
                              render(m)))
    return diffs


def _show(value: object) -> str:
    if hasattr(value, "name"):
        return str(value.name)
    return str(value)


def compare_packets(kernel_sent: list[WirePacket],
                    model_sent: list[tuple[int, str, bytes]]) -> list[Diff]:
    """Per interface, in order: the n-th packet the kernel sent against the model's n-th."""
    diffs: list[Diff] = []
    kernel_by_if: dict[str, list[bytes]] = defaultdict(list)
    model_by_if: dict[str, list[bytes]] = defaultdict(list)
    for wp in kernel_sent:
        if wp.direction == "out":
            kernel_by_if[wp.iface].append(wp.data)
    for _, iface, data in model_sent:
        model_by_if[iface].append(data)
    for iface in sorted(set(kernel_by_if) | set(model_by_if)):
        ks, ms = kernel_by_if[iface], model_by_if[iface]
        for n in range(max(len(ks), len(ms))):
            where = f"packet out {iface} #{n + 1}"
            k = ks[n] if n < len(ks) else None
            m = ms[n] if n < len(ms) else None
            if k == m:
                continue
            if k is None or m is None:
                diffs.append(Diff(where, "sent", _summary(k), _summary(m)))
                continue
            diffs.extend(packet_field_diffs(where, k, m))
    return diffs


def _summary(data: bytes | None) -> str:
    if data is None:
        return "(not sent)"
    try:
        return parse(data).summary()
    except MalformedPacket:
        return data.hex()


def packet_field_diffs(where: str, kernel: bytes, model: bytes) -> list[Diff]:
    """Name the header fields that differ (falls back to bytes when unparseable)."""
    try:
        k, m = parse(kernel), parse(model)
    except MalformedPacket:
        return [Diff(where, "bytes", kernel.hex(), model.hex())]
    out = [Diff(where, f"ip.{f.name}", str(getattr(k.ip, f.name)), str(getattr(m.ip, f.name)))
           for f in fields(k.ip) if getattr(k.ip, f.name) != getattr(m.ip, f.name)]
    out += _l4_diffs(where, k, m)
    if k.payload != m.payload:
        out.append(Diff(where, "payload", k.payload.hex(), m.payload.hex()))
    if not out:
        out.append(Diff(where, "bytes", kernel.hex(), model.hex()))
    return out


def _l4_diffs(where: str, k: Packet, m: Packet) -> list[Diff]:
    if type(k.l4) is not type(m.l4):
        return [Diff(where, "l4", type(k.l4).__name__, type(m.l4).__name__)]
    if k.l4 is None or m.l4 is None:
        return []
    name = type(k.l4).__name__.replace("Header", "").lower()
    return [Diff(where, f"{name}.{f.name}", str(getattr(k.l4, f.name)),
                 str(getattr(m.l4, f.name)))
            for f in fields(k.l4) if getattr(k.l4, f.name) != getattr(m.l4, f.name)]


def verdict(diffs: list[Diff], xfail: str | None, error: str | None = None,
            unmodeled: str | None = None) -> Verdict:
    """MATCH / MISMATCH; XFAIL when a declared divergence shows; XPASS when it does not.
    An infrastructure failure (`error`) outranks everything, since what was recorded is not
    the whole run; a construct outside the model (`unmodeled`) outranks the comparison, since
    there was none."""
    if error is not None:
        return "ERROR"
    if unmodeled is not None:
        return "UNMODELED"
    if xfail is not None:
        return "XFAIL" if diffs else "XPASS"
    return "MISMATCH" if diffs else "MATCH"
