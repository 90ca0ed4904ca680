"""A small pcapng writer: Section Header, Interface Description and Enhanced Packet blocks.

Why our own: the bundle's captures need, per interface, its name (`if_name`) and nanosecond
time stamps (`if_tsresol` = 9), and per packet its direction (`epb_flags`) and comments. dpkt
1.9.8 and scapy 2.8 (both test dependencies) write pcapng, but both scale time stamps to
microseconds (scapy writes no `if_tsresol`; dpkt's `writepkt` rounds to microseconds), and
scapy adds an unnamed interface 0 before the named ones. Block layout from the pcapng
specification (draft-ietf-opsawg-pcapng): every block is type, total length, body, options,
total length again; options are code, length, value padded to 32 bits, ended by opt_endofopt.
Little-endian throughout (readers take either; tcpdump and tshark were checked with this).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

OPT_ENDOFOPT = 0
OPT_COMMENT = 1
OPT_SHB_USERAPPL = 4
OPT_IF_NAME = 2
OPT_IF_DESCRIPTION = 3
OPT_IF_TSRESOL = 9
OPT_EPB_FLAGS = 2

# epb_flags bits 0-1: the direction.
FLAG_INBOUND = 0b01
FLAG_OUTBOUND = 0b10

SNAPLEN = 262144
MAX_OPTION = 0xFFFF         # an option's length field is 16 bits


@dataclass(frozen=True)
class Interface:
    """One Interface Description Block; interfaces are numbered in the order written."""

    name: str
    linktype: int
    description: str = ""


@dataclass(frozen=True)
class Packet:
    """One Enhanced Packet Block. `interface` is the index of its Interface."""

    interface: int
    stamp_ns: int                                   # nanoseconds since the epoch
    data: bytes
    direction: Literal["in", "out"] | None = None
    comments: tuple[str, ...] = ()


def _text(value: str) -> bytes:
    """UTF-8, cut (at a character boundary) to what one option can hold."""
    raw = value.encode("utf-8", "backslashreplace")
    if len(raw) <= MAX_OPTION:
        return raw
    return raw[:MAX_OPTION].decode("utf-8", "ignore").encode("utf-8")


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(block_type: int, body: bytes, options: Sequence[bytes] = ()) -> bytes:
    opts = b"".join(options) + (struct.pack("<HH", OPT_ENDOFOPT, 0) if options else b"")
    length = 12 + len(body) + len(opts)
    return struct.pack("<II", block_type, length) + body + opts + struct.pack("<I", length)


def section_header(application: str, comment: str = "") -> bytes:
    options = [_option(OPT_SHB_USERAPPL, _text(application))]
    if comment:
        options.insert(0, _option(OPT_COMMENT, _text(comment)))
    # version 1.0, section length -1: "not given" (the file is written in one pass)
    return _block(BT_SHB, struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1), options)


def interface_block(iface: Interface) -> bytes:
    options = [_option(OPT_IF_NAME, _text(iface.name))]
    if iface.description:
        options.append(_option(OPT_IF_DESCRIPTION, _text(iface.description)))
    options.append(_option(OPT_IF_TSRESOL, bytes([9])))      # 10^-9 s: nanoseconds
    return _block(BT_IDB, struct.pack("<HHI", iface.linktype, 0, SNAPLEN), options)


def packet_block(pkt: Packet) -> bytes:
    if pkt.stamp_ns < 0:
        raise ValueError(f"time stamp {pkt.stamp_ns} ns is before the epoch")
    padded = pkt.data + b"\0" * (-len(pkt.data) % 4)
    body = struct.pack("<IIIII", pkt.interface, pkt.stamp_ns >> 32, pkt.stamp_ns & 0xFFFFFFFF,
                       len(pkt.data), len(pkt.data)) + padded
    options = [_option(OPT_COMMENT, _text(c)) for c in pkt.comments]
    if pkt.direction is not None:
        flags = FLAG_INBOUND if pkt.direction == "in" else FLAG_OUTBOUND
        options.append(_option(OPT_EPB_FLAGS, struct.pack("<I", flags)))
    return _block(BT_EPB, body, options)


def write_stream(out: BinaryIO, interfaces: Sequence[Interface], packets: Iterable[Packet],
                 *, application: str, comment: str = "") -> int:
    """Write one section to `out`; returns the number of packets written. Every packet's
    interface must be one of `interfaces`."""
    out.write(section_header(application, comment))
    for iface in interfaces:
        out.write(interface_block(iface))
    n = 0
    for pkt in packets:
        if not 0 <= pkt.interface < len(interfaces):
            raise ValueError(f"packet on interface {pkt.interface}, but only "
                             f"{len(interfaces)} interface(s) described")
        out.write(packet_block(pkt))
        n += 1
    return n


def write_pcapng(path: Path, interfaces: Sequence[Interface], packets: Iterable[Packet],
                 *, application: str, comment: str = "") -> Path:
    """`write_stream` into `path`, through a temporary name, so `path` is whole or absent."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:
            write_stream(f, interfaces, packets, application=application, comment=comment)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
