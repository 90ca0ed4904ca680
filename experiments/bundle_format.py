"""The result bundle's layout and format version: the one contract between the kernel side,
which writes bundles, and the records, which read them (`natlab judge`, no root).

A bundle holds everything needed to re-judge the run without root (the spec, the captured
packets, the conntrack dumps, the gateway's sysctls and the kernel release) and the record a
reader wants (versions, the ruleset as loaded, pcaps per interface, the event log, the
prediction, the diffs and the verdict):

    spec.toml  meta.json  observed.json  packets.jsonl  prediction.json  verdict.json
    ruleset.txt  conntrack/<snapshot>.txt  events.txt
    pcap/all.pcapng  pcap/by-interface/<iface>.pcapng

`meta.json` carries `format`. Its history (a reader takes every version listed here, and
refuses any other in one line rather than guessing):

- 1: the first format (issue 5).
- 2: `observed.json`'s `received` items also carry the host's receive `time` and the `note`
  (what kind of delivery it was); readers of version 1 take time 0.0 and no note.
- 3: `received` also lists the TCP segments without payload each host's IP layer delivered
  (RST, bare SYN/ACK, ACK), with `flags` ("SA", "R", "A"...); older bundles have no such
  items and no `flags` (read as None). `observed.json` carries `moments`: when each step that
  changes the world (`rules`, `conntrack`, `sysctl`, `host_rules`) took effect, and the
  ruleset text a `rules` step fed; readers of versions 1 and 2 take none (those specs had no
  such steps). And `error`: the infrastructure failure that cut the run short, if any.
  The captures are pcapng for people (`experiments.kernel.wireshark`): `pcap/all.pcapng`
  (every interface of the gateway, named) and `pcap/by-interface/<iface>.pcapng`, each
  packet with its direction and the model's journey as comments; natlab's marker frame and
  marker entry are no longer in the captures and events.txt. Formats 1 and 2 had
  `pcap/all.pcap` (tcpdump's LINUX_SLL2 file) and `pcap/<iface>.pcap` (LINKTYPE_RAW).
  `natlab judge` reads none of these, so captures of every version are judged alike.

A bundle is untrusted input (people download them from course pages). `natlab judge` reads
only the files in `JUDGED_FILES`, each a regular file of at most `FILE_LIMITS` bytes (JSON
nested at most `MAX_JSON_DEPTH` deep, packets.jsonl at most `MAX_PACKET_LINES` lines). A spec
step may send 100,000 datagrams; with replies, in and out of the gateway, that is 400,000
lines of packets.jsonl (a line is 131 bytes for an empty datagram, 259 with 64 bytes of
payload: 52-104 MB): the limits leave room for several such steps, and still
bound what a forged bundle can make the reader allocate.
"""

from __future__ import annotations

FORMAT = 3
READABLE_FORMATS: frozenset[int] = frozenset({1, 2, 3})

KiB = 1024
MiB = 1024 * KiB
# What `natlab judge` reads, and the most bytes it reads of each.
FILE_LIMITS: dict[str, int] = {
    "meta.json": 256 * KiB,
    "spec.toml": 256 * KiB,
    "verdict.json": 4 * MiB,
    "observed.json": 256 * MiB,
    "packets.jsonl": 1024 * MiB,
}
JUDGED_FILES: tuple[str, ...] = tuple(FILE_LIMITS)
MAX_JSON_DEPTH = 16
MAX_PACKET_LINES = 8_000_000


def format_problem(value: object) -> str | None:
    """Why a bundle whose meta.json says `format = value` cannot be read, or None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"format {value!r} is not a bundle format version"
    if value not in READABLE_FORMATS:
        newest = max(READABLE_FORMATS)
        return (f"format {value} is unknown to this natlab (it reads formats "
                f"{', '.join(map(str, sorted(READABLE_FORMATS)))}; "
                + ("a newer natlab wrote it)" if value > newest else "not a natlab bundle)"))
    return None
