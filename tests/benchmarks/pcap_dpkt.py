"""dpkt vs the hand-written pcap code in experiments/kernel/capture.py (docs/bench.md).

    .venv/bin/python tests/benchmarks/pcap_dpkt.py [PACKETS]     # default 100,000; needs dpkt (dev)

Builds a LINUX_SLL2 nanosecond capture as tcpdump writes it, then times, alternating the two
15 times each: reading it into CapturedPacket, writing the per-interface LINKTYPE_RAW pcap,
and reading that back. Checks both give the same packets. Writes only under a temporary folder.
"""
import gc
import io
import shutil
import statistics
import struct
import sys
import tempfile
import time
from ipaddress import IPv4Address as A
from pathlib import Path

import dpkt

from experiments.craft import tcp, udp
from experiments.kernel.capture import (
    _MAGIC_NSEC,
    ETH_P_IP,
    LINKTYPE_LINUX_SLL2,
    PACKET_OUTGOING,
    SLL2_HEADER_LEN,
    CapturedPacket,
    parse_sll2_capture,
    read_raw_pcap,
    write_raw_pcap,
)

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
pkts = []
for i in range(N):
    p = (udp(A("10.0.0.2"), 1024 + i % 60000, A("10.0.0.1"), 9999, b"x" * (i % 64))
         if i % 2 else tcp(A("10.0.0.2"), 1024 + i % 60000, A("10.0.0.1"), 443, 0x10, seq=i))
    pkts.append(p.to_bytes())
ifnames = {2: "g-eth0", 3: "g-eth1"}
# Build an SLL2 nanosecond capture, as tcpdump writes it.
parts = [struct.pack("<IHHiIII", _MAGIC_NSEC, 2, 4, 0, 0, 262144, LINKTYPE_LINUX_SLL2)]
for i, data in enumerate(pkts):
    pkttype = PACKET_OUTGOING if i % 3 == 0 else 0
    sll2 = struct.pack("!HHIHBB8s", ETH_P_IP, 0, 2 + i % 2, 1, pkttype, 6, bytes(8))
    rec = sll2 + data
    ns = 1_700_000_000 * 10**9 + i * 1000
    parts.append(struct.pack("<IIII", ns // 10**9, ns % 10**9, len(rec), len(rec)) + rec)
blob = b"".join(parts)
print(f"{N} packets, SLL2 capture {len(blob)/1e6:.1f} MB")

def dpkt_parse(blob, ifnames):
    r = dpkt.pcap.Reader(io.BytesIO(blob))
    assert r.datalink() == LINKTYPE_LINUX_SLL2
    out = []
    for ts, buf in r:
        if len(buf) < SLL2_HEADER_LEN:
            continue
        proto, _res, ifindex, _hatype, pkttype, _alen = struct.unpack("!HHIHBB", buf[:12])
        if proto != ETH_P_IP:
            continue
        way = "out" if pkttype == PACKET_OUTGOING else "in"
        out.append(CapturedPacket(float(ts), ifindex, ifnames.get(ifindex, f"if{ifindex}"),
                                  way, buf[SLL2_HEADER_LEN:]))
    return out

def dpkt_write(path, packets):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_RAW, nano=True)
        for t, data in packets:
            w.writepkt(data, ts=t)
    return path

def dpkt_read(path):
    with open(path, "rb") as f:
        return [(float(ts), buf) for ts, buf in dpkt.pcap.Reader(f)]

tp = [(p.time, p.data) for p in parse_sll2_capture(blob, ifnames)]
d = Path(tempfile.mkdtemp(prefix="natlab-pcap-bench-"))
write_raw_pcap(d / "hand.pcap", tp)
dpkt_write(d / "dpkt.pcap", tp)
cases = {
    "read SLL2 (parse_sll2_capture)": (lambda: parse_sll2_capture(blob, ifnames),
                                       lambda: dpkt_parse(blob, ifnames)),
    "write RAW (write_raw_pcap)": (lambda: write_raw_pcap(d / "hand.pcap", tp),
                                   lambda: dpkt_write(d / "dpkt.pcap", tp)),
    "read RAW (read_raw_pcap)": (lambda: read_raw_pcap(d / "hand.pcap"),
                                 lambda: dpkt_read(d / "dpkt.pcap")),
}

for name, (h, k) in cases.items():
    th, tk = [], []
    for _ in range(15):
        for fn, acc in ((h, th), (k, tk)):
            gc.collect()
            t = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t)
    mh, mk = statistics.median(th), statistics.median(tk)
    print(f"{name:32s} hand median {mh * 1000:6.0f} ms (min {min(th) * 1000:4.0f})  "
          f"dpkt median {mk * 1000:6.0f} ms (min {min(tk) * 1000:4.0f})  "
          f"dpkt/hand {mk / mh:.2f}x (min/min {min(tk) / min(th):.2f}x)", flush=True)
a = parse_sll2_capture(blob, ifnames)
b = dpkt_parse(blob, ifnames)
assert [(p.time, p.ifindex, p.direction, p.data) for p in a] == \
    [(p.time, p.ifindex, p.direction, p.data) for p in b]
r1 = read_raw_pcap(d / "hand.pcap")
r2 = dpkt_read(d / "dpkt.pcap")
off = sum(abs(x[0] - y[0]) > 1e-9 for x, y in zip(r1, r2, strict=True))
print("RAW files: same packets", [x[1] for x in r1] == [x[1] for x in r2],
      "; timestamps differing by >1 ns after dpkt write:", off,
      "; headers hand", (d / "hand.pcap").read_bytes()[:24].hex(),
      "dpkt", (d / "dpkt.pcap").read_bytes()[:24].hex())
shutil.rmtree(d)
