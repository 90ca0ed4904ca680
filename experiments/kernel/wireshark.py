"""The bundle's captures, for people: pcapng files that Wireshark, tshark and tcpdump read
as they are, made from the gateway's SLL2 capture.

What tcpdump's `-i any` capture (LINUX_SLL2) lacks for a reader: the interface names (SLL2
holds only the index, and tcpdump names it from the machine that reads the file, with a
warning) and a clean record (natlab's marker frame, `Capture.drain`, is in it). So each frame
is rewritten as LINUX_SLL (v1: packet type, link-layer address and ethertype kept; the index
moves to the pcapng interface) and written as an Enhanced Packet Block on an interface that
carries the gateway's own name (`if_name`), with its direction (`epb_flags`) and the
comments given for it; marker frames are left out. One link type for every interface,
because libpcap (tcpdump) refuses a file whose interfaces differ in link type; LINKTYPE_RAW
would lose ARP and, in libpcap 1.10.3, is refused even when every interface has it.

The comments come from the caller by packet number (the IPv4 frames in capture order, as
`parse_sll2_capture` numbers them: packet #1 of packets.jsonl and verdict.json is index 0):
the kernel side writes them without knowing what they say.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from experiments.kernel.capture import Sll2Frame, ifname_of, read_sll2_frames
from experiments.kernel.pcapng import Interface, Packet, write_pcapng

LINKTYPE_LINUX_SLL = 113
APPLICATION = "natlab"
ALL = "all.pcapng"
BY_INTERFACE = "by-interface"


def sll_header(frame: Sll2Frame) -> bytes:
    """The 16-byte LINUX_SLL (v1) header for an SLL2 frame: the same fields, reordered,
    without the interface index."""
    return struct.pack("!HHH8sH", frame.pkttype, frame.hatype, frame.halen, frame.addr,
                       frame.protocol)


def _numbered(frames: Sequence[Sll2Frame]) -> Iterator[tuple[int | None, Sll2Frame]]:
    """Each frame that is not natlab's marker, with its packet number (None if not IPv4)."""
    index = 0
    for f in frames:
        number = None
        if f.is_ipv4:
            number, index = index, index + 1
        if not f.is_marker:
            yield number, f


def write_captures(sll2: Path, ifnames: Mapping[int, str],
                   comments: Mapping[int, Sequence[str]], directory: Path,
                   header: str = "") -> list[Path]:
    """Write `directory/all.pcapng` (every interface of the gateway, one pcapng interface
    each) and `directory/by-interface/<name>.pcapng` for each interface that carried a frame.
    `header` is the section comment of each file. Returns the paths written."""
    frames = read_sll2_frames(sll2.read_bytes()) if sll2.exists() else []
    kept = list(_numbered(frames))
    indexes = sorted(set(ifnames) | {f.ifindex for _, f in kept})
    interfaces = [Interface(ifname_of(i, ifnames), LINKTYPE_LINUX_SLL,
                            f"the gateway's interface {ifname_of(i, ifnames)} (ifindex {i})")
                  for i in indexes]
    position = {ifindex: n for n, ifindex in enumerate(indexes)}

    def packet(number: int | None, f: Sll2Frame, interface: int) -> Packet:
        notes = tuple(comments.get(number, ())) if number is not None else ()
        return Packet(interface, f.stamp_ns, sll_header(f) + f.payload, f.direction, notes)

    directory.mkdir(parents=True, exist_ok=True)
    written = [write_pcapng(directory / ALL, interfaces,
                            (packet(n, f, position[f.ifindex]) for n, f in kept),
                            application=APPLICATION, comment=header)]
    used = sorted({f.ifindex for _, f in kept})
    if used:
        (directory / BY_INTERFACE).mkdir(exist_ok=True)
    for ifindex in used:
        iface = interfaces[position[ifindex]]
        written.append(write_pcapng(
            directory / BY_INTERFACE / f"{iface.name}.pcapng", [iface],
            (packet(n, f, 0) for n, f in kept if f.ifindex == ifindex),
            application=APPLICATION, comment=header))
    return written
