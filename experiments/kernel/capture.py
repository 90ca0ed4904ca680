"""Capturing every packet in and out of the gateway, in order, with interface and direction.

`tcpdump -i any -y LINUX_SLL2` inside the gateway's namespace sees each packet as it enters
(before PREROUTING) and as it leaves (after POSTROUTING), tagged with the interface index and
the packet type (4 = outgoing). `--immediate-mode` and `-U` make each packet reach the file
at once, so a waiting driver can see it; `-Z root` keeps tcpdump from dropping privileges
before it opens the file. The capture is parsed here by hand (pcap and the 20-byte SLL2
header are small), IPv4 only, into `CapturedPacket`. For the result bundle each interface
also gets a pcap of its own (LINKTYPE_RAW: the IPv4 packet, no link header; Wireshark opens
it), since the combined SLL2 file is awkward to read per interface.
"""

from __future__ import annotations

import json
import secrets
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from experiments.observed import WirePacket
from topologies.hostexec import CommandError, HostHandle, KernelError, terminate

Direction = Literal["in", "out"]

LINKTYPE_RAW = 101           # the IPv4/IPv6 packet itself
LINKTYPE_LINUX_SLL2 = 276    # Linux "cooked" capture v2
SLL2_HEADER_LEN = 20
PACKET_OUTGOING = 4          # include/uapi/linux/if_packet.h PACKET_OUTGOING
ETH_P_IP = 0x0800

# In immediate mode libpcap uses a TPACKET_V2 ring of fixed-size frames (snaplen each): with
# tcpdump's defaults (262144 bytes, 2 MiB) that is 8 frames, and a burst of a few packets
# overflows it ("dropped by kernel"). Our links have a 1500-byte MTU: 16 KiB frames in a
# 32 MiB ring hold ~2000 packets.
SNAPLEN = 16384
BUFFER_KIB = 32768
ETH_P_MARKER = 0x88B5       # IEEE 802 "local experimental" ethertype: conntrack never sees it
_MARKER_SENDER = (
    "import socket,sys;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind(('lo',0));"
    "s.send(bytes(12)+bytes.fromhex('88b5')+bytes.fromhex(sys.argv[1]))"
)

_MAGIC_USEC = 0xA1B2C3D4
_MAGIC_NSEC = 0xA1B23C4D


class CaptureError(KernelError):
    """tcpdump failed to start, or a capture file is not one we can read (one line)."""


@dataclass(frozen=True)
class CapturedPacket:
    """One IPv4 packet seen at the gateway. `time` is wall-clock seconds (tcpdump's
    timestamp); `direction` "out" means the gateway sent it."""

    time: float
    ifindex: int
    ifname: str
    direction: Direction
    data: bytes

    def to_wire(self, t0: float) -> WirePacket:
        """The replay/compare form, with time relative to the run's start `t0`."""
        return WirePacket(self.time - t0, self.ifname, self.direction, self.data)


@dataclass(frozen=True)
class _Record:
    time: float
    data: bytes
    stamp_ns: int = 0       # the same time, exact: nanoseconds since the epoch


@dataclass(frozen=True)
class Sll2Frame:
    """One record of an SLL2 capture, its 20-byte header taken apart (`payload` follows it).
    `stamp_ns` is the record's time exactly as tcpdump wrote it."""

    stamp_ns: int
    time: float
    protocol: int            # the ethertype: 0x0800 IPv4, 0x0806 ARP, ETH_P_MARKER ...
    ifindex: int
    hatype: int
    pkttype: int
    halen: int
    addr: bytes              # 8 bytes, the first `halen` of them the link-layer address
    payload: bytes

    @property
    def direction(self) -> Direction:
        return "out" if self.pkttype == PACKET_OUTGOING else "in"

    @property
    def is_ipv4(self) -> bool:
        """One of the packets natlab judges (and numbers: packet #1, #2 ... of a bundle)."""
        return self.protocol == ETH_P_IP

    @property
    def is_marker(self) -> bool:
        """natlab's own end-of-capture marker (`Capture.drain`), never the experiment's."""
        return self.protocol == ETH_P_MARKER


def _read_pcap(blob: bytes) -> tuple[int, list[_Record]]:
    """(linktype, complete records) of a pcap file; a partly written last record is ignored."""
    if len(blob) < 24:
        return -1, []
    magic_le = struct.unpack("<I", blob[:4])[0]
    if magic_le in (_MAGIC_USEC, _MAGIC_NSEC):
        endian = "<"
    elif struct.unpack(">I", blob[:4])[0] in (_MAGIC_USEC, _MAGIC_NSEC):
        endian = ">"
    else:
        raise CaptureError(f"not a pcap file (magic {blob[:4].hex()})")
    magic = struct.unpack(endian + "I", blob[:4])[0]
    scale = 1e-9 if magic == _MAGIC_NSEC else 1e-6
    ns_per_tick = 1 if magic == _MAGIC_NSEC else 1000
    linktype = struct.unpack(endian + "I", blob[20:24])[0] & 0x0FFFFFFF
    records: list[_Record] = []
    off = 24
    while off + 16 <= len(blob):
        sec, frac, incl, _orig = struct.unpack(endian + "IIII", blob[off:off + 16])
        if off + 16 + incl > len(blob):
            break
        records.append(_Record(sec + frac * scale, blob[off + 16:off + 16 + incl],
                               sec * 1_000_000_000 + frac * ns_per_tick))
        off += 16 + incl
    return linktype, records


def read_sll2_frames(blob: bytes) -> list[Sll2Frame]:
    """Every complete frame of an SLL2 pcap, in capture order (records too short to hold
    the SLL2 header are left out)."""
    linktype, records = _read_pcap(blob)
    if linktype == -1:
        return []
    if linktype != LINKTYPE_LINUX_SLL2:
        raise CaptureError(f"capture has link type {linktype}, expected LINUX_SLL2 (276)")
    out: list[Sll2Frame] = []
    for rec in records:
        if len(rec.data) < SLL2_HEADER_LEN:
            continue
        proto, _res, ifindex, hatype, pkttype, halen, addr = struct.unpack(
            "!HHIHBB8s", rec.data[:SLL2_HEADER_LEN])
        out.append(Sll2Frame(rec.stamp_ns, rec.time, proto, ifindex, hatype, pkttype, halen,
                             addr, rec.data[SLL2_HEADER_LEN:]))
    return out


def ifname_of(ifindex: int, ifnames: Mapping[int, str]) -> str:
    """The gateway's name for `ifindex` (`if<N>` for one that was gone when names were read)."""
    return ifnames.get(ifindex, f"if{ifindex}")


def parse_sll2_capture(blob: bytes, ifnames: Mapping[int, str]) -> list[CapturedPacket]:
    """The IPv4 packets of an SLL2 pcap, in capture order: exactly the frames of
    `read_sll2_frames` that are `is_ipv4` (tests hold the two to that), read here without
    the intermediate frames, since `Capture.wait_for` reads the whole file on every poll."""
    linktype, records = _read_pcap(blob)
    if linktype == -1:
        return []
    if linktype != LINKTYPE_LINUX_SLL2:
        raise CaptureError(f"capture has link type {linktype}, expected LINUX_SLL2 (276)")
    out: list[CapturedPacket] = []
    for rec in records:
        if len(rec.data) < SLL2_HEADER_LEN:
            continue
        proto, _res, ifindex, _hatype, pkttype, _alen = struct.unpack(
            "!HHIHBB", rec.data[:12])
        if proto != ETH_P_IP:
            continue
        direction: Direction = "out" if pkttype == PACKET_OUTGOING else "in"
        out.append(CapturedPacket(rec.time, ifindex, ifname_of(ifindex, ifnames),
                                  direction, rec.data[SLL2_HEADER_LEN:]))
    return out


def write_raw_pcap(path: Path, packets: Iterable[tuple[float, bytes]]) -> Path:
    """A nanosecond pcap with LINKTYPE_RAW records (time, IPv4 packet bytes)."""
    parts = [struct.pack("<IHHiIII", _MAGIC_NSEC, 2, 4, 0, 0, 262144, LINKTYPE_RAW)]
    for t, data in packets:
        ns = round(t * 1e9)
        parts.append(struct.pack("<IIII", ns // 1_000_000_000, ns % 1_000_000_000,
                                 len(data), len(data)))
        parts.append(data)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(b"".join(parts))
    tmp.replace(path)
    return path


def read_raw_pcap(path: Path) -> list[tuple[float, bytes]]:
    linktype, records = _read_pcap(path.read_bytes())
    if linktype != LINKTYPE_RAW:
        raise CaptureError(f"{path}: link type {linktype}, expected RAW (101)")
    return [(r.time, r.data) for r in records]


def interface_names(host: HostHandle) -> dict[int, str]:
    """ifindex -> name inside `host` (`ip -j link show`)."""
    proc = host.run(("ip", "-j", "link", "show"))
    return {int(d["ifindex"]): str(d["ifname"]) for d in json.loads(proc.stdout)}


class Capture:
    """tcpdump in `host` writing `path`; a context manager. Stop sends SIGTERM to our own
    tcpdump only and waits for it."""

    def __init__(self, host: HostHandle, path: Path, *, ifnames: Mapping[int, str] | None = None,
                 ready_timeout: float = 5.0) -> None:
        self.host = host
        self.path = path
        self.ready_timeout = ready_timeout
        self._ifnames = dict(ifnames) if ifnames is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None
        self.drained: bool | None = None   # did stop() see its end marker in the file?

    @property
    def argv(self) -> tuple[str, ...]:
        return ("tcpdump", "-i", "any", "-y", "LINUX_SLL2", "-U", "--immediate-mode",
                "-s", str(SNAPLEN), "-B", str(BUFFER_KIB),
                "--time-stamp-precision=nano", "-Z", "root", "-w", str(self.path))

    @property
    def ifnames(self) -> dict[int, str]:
        if self._ifnames is None:
            self._ifnames = interface_names(self.host)
        return self._ifnames

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    def start(self) -> None:
        _ = self.ifnames
        self._proc = self.host.popen(self.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_stderr, args=(self._proc,),
                                        daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.ready_timeout
        while not self._listening.wait(0.005):
            if self._proc.poll() is not None:
                self._reader.join(1.0)
                raise CaptureError(f"exited with status {self._proc.returncode}",
                                   argv=self.argv, host=self.host.name,
                                   returncode=self._proc.returncode,
                                   stderr="; ".join(self._stderr))
            if time.monotonic() > deadline:
                self.stop()
                raise CaptureError(f"did not report listening within {self.ready_timeout} s",
                                   argv=self.argv, host=self.host.name)

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._stderr.append(line)
            if "listening on" in line:
                self._listening.set()

    def _records(self) -> list[_Record]:
        try:
            return _read_pcap(self.path.read_bytes())[1]
        except FileNotFoundError:
            return []

    def drain(self, timeout: float = 2.0) -> bool:
        """Make sure every packet captured so far is in the file.

        tcpdump leaves packets still in its ring unwritten when it is signalled (and counts
        them as "dropped by kernel"). So a marker frame (ethertype 0x88B5, never IPv4, never
        tracked) is sent on the gateway's `lo`, and we wait until it is in the file: the
        ring is in arrival order, so everything before it is written too."""
        token = secrets.token_bytes(8)
        try:
            self.host.run((sys.executable, "-c", _MARKER_SENDER, b"natlab-end".hex()
                           + token.hex()))
        except CommandError:
            return False
        needle = struct.pack("!H", ETH_P_MARKER)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r.data[:2] == needle and r.data.endswith(token) for r in self._records()):
                return True
            time.sleep(0.002)
        return False

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self.drained = self.drain()
            terminate(proc, 5.0)
        if self._reader is not None:
            self._reader.join(2.0)
        if proc.stderr is not None:
            proc.stderr.close()
        self._proc = None

    @property
    def dropped(self) -> int | None:
        """Packets tcpdump reported as dropped by the kernel (after stop)."""
        for line in self._stderr:
            if line.endswith("packets dropped by kernel"):
                return int(line.split()[0])
        return None

    def packets(self) -> list[CapturedPacket]:
        """Every IPv4 packet captured so far (the whole capture after stop())."""
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return parse_sll2_capture(blob, self.ifnames)

    def wait_for(self, predicate: Callable[[list[CapturedPacket]], bool], timeout: float,
                 poll: float = 0.002) -> bool:
        """Poll the capture until `predicate(packets)` holds; False at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self.packets()):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(poll)

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

