"""`conntrack -L` lines: rendering an Entry exactly as conntrack-tools prints it, and reading back.

Mirrors __snprintf_conntrack_default() in libnetfilter_conntrack 1.0.9
(src/conntrack/snprintf_default.c, names from src/conntrack/snprintf.c) as printed by
conntrack-tools 1.4.7 `conntrack -L` and `conntrack -L -o extended,id`. Word order (each
optional word only when present):

    [l3name:<8 l3num]  l4name:<8 l4num  timeout  [TCPSTATE]
    src= dst= <l4>  [zone-orig=]  [packets= bytes=]  [UNREPLIED]
    src= dst= <l4>  [zone-reply=] [packets= bytes=]  [HW_OFFLOAD]|[OFFLOAD]|[ASSURED]
    mark=  [secmark=]  [secctx=]  [zone=]  [delta-time=]  [[start=..]] [[stop=..]]
    [helper=]  use=  [id=]  [labels=]

where <l4> is `sport= dport=` (tcp, udp, udplite, sctp, dccp), `type= code= id=` (icmp),
`srckey=0x.. dstkey=0x..` (gre), or nothing. Counters, secmark, secctx, delta-time, timestamps,
helper and labels are accepted and dropped: `Entry` does not carry them. Offloaded entries
have no timeout and no TCP state. IPv4 only: IPv6 lines are refused (and skipped by
`parse_listing`, since a plain `conntrack -L` lists both families), and so is an `icmpv6 58`
line with IPv4 addresses: the kernel never tracks an IPv4 packet of protocol 58 (nat.core).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import AddressValueError, IPv4Address

from nat.entry import Entry
from nat.status import TcpState
from nat.tuple import Proto, Tuple

L4_NAMES: dict[int, str] = {6: "tcp", 17: "udp", 136: "udplite", 1: "icmp", 58: "icmpv6",
                            132: "sctp", 47: "gre", 33: "dccp"}
"""proto2str[] of libnetfilter_conntrack; any other protocol prints as "unknown"."""
_L4_NUMBERS: dict[str, int] = {name: num for num, name in L4_NAMES.items()}
PORT_PROTOS: frozenset[int] = frozenset({6, 17, 136, 132, 33})
GRE = 47
L3_IPV4 = ("ipv4", 2)
_STATE_WORD = re.compile(r"[A-Z][A-Z0-9_]*")
SUMMARY_PREFIX = "conntrack v"
"""The stderr line `conntrack v1.4.7 (conntrack-tools): N flow entries have been shown.`"""


class ListingError(ValueError):
    """A line that is not a `conntrack -L` entry line; says what was expected where."""

    def __init__(self, line: str, message: str) -> None:
        super().__init__(f"cannot read conntrack line ({message}): {line.strip()!r}")
        self.line = line
        self.message = message


# -- rendering ------------------------------------------------------------------------------


def l4_name(proto: int) -> str:
    return L4_NAMES.get(proto, "unknown")


def tuple_words(t: Tuple) -> list[str]:
    """__snprintf_address() + __snprintf_proto() for one direction."""
    words = [f"src={t.src}", f"dst={t.dst}"]
    if t.proto in PORT_PROTOS:
        words += [f"sport={t.sport}", f"dport={t.dport}"]
    elif t.proto == Proto.ICMP:
        words += [f"type={t.icmp_type}", f"code={t.icmp_code}", f"id={t.icmp_id}"]
    elif t.proto == GRE:
        words += [f"srckey={t.sport:#x}", f"dstkey={t.dport:#x}"]
    return words


def render(entry: Entry, *, extended: bool = False) -> str:
    """The entry as `conntrack -L` (or `-o extended`) prints it. `use` None prints as use=1
    (an idle entry in a dump); `id=` only when the entry has one (as with `-o id`)."""
    words: list[str] = []
    if extended:
        words.append(f"{L3_IPV4[0]:<8} {L3_IPV4[1]}")
    words.append(f"{l4_name(entry.proto):<8} {entry.proto}")
    if entry.timeout is not None:
        words.append(str(entry.timeout))
    if entry.state is not None:
        words.append(entry.state.name)
    words += tuple_words(entry.orig)
    if entry.zone_orig is not None:
        words.append(f"zone-orig={entry.zone_orig}")
    if entry.unreplied:
        words.append("[UNREPLIED]")
    words += tuple_words(entry.reply)
    if entry.zone_reply is not None:
        words.append(f"zone-reply={entry.zone_reply}")
    if entry.assured:
        words.append("[ASSURED]")
    words.append(f"mark={entry.mark}")
    if entry.zone:
        words.append(f"zone={entry.zone}")
    words.append(f"use={1 if entry.use is None else entry.use}")
    if entry.id is not None:
        words.append(f"id={entry.id}")
    return " ".join(words)


# -- parsing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPattern:
    """An `[expect]` line of a spec: an entry where timeout, TCP state, mark, use and id may be
    left out (None: anything matches). Tuples, flags and zones are always compared."""

    orig: Tuple
    reply: Tuple
    timeout: int | None = None
    state: TcpState | None = None
    unreplied: bool = False
    assured: bool = False
    mark: int | None = None
    zone: int = 0
    zone_orig: int | None = None
    zone_reply: int | None = None
    use: int | None = None
    id: int | None = None

    def matches(self, entry: Entry) -> bool:
        always = (self.orig == entry.orig and self.reply == entry.reply
                  and self.unreplied == entry.unreplied and self.assured == entry.assured
                  and self.zone == entry.zone and self.zone_orig == entry.zone_orig
                  and self.zone_reply == entry.zone_reply)
        given = all(want is None or want == have for want, have in (
            (self.timeout, entry.timeout), (self.state, entry.state), (self.mark, entry.mark),
            (self.use, entry.use), (self.id, entry.id)))
        return always and given

    def __str__(self) -> str:
        return render_pattern(self)


def render_pattern(p: EntryPattern) -> str:
    """The pattern in the line grammar (left-out fields left out)."""
    e = Entry(orig=p.orig, reply=p.reply, timeout=p.timeout, state=p.state,
              unreplied=p.unreplied, assured=p.assured, mark=p.mark or 0, zone=p.zone,
              zone_orig=p.zone_orig, zone_reply=p.zone_reply, use=p.use, id=p.id)
    words = render(e).split(" ")
    if p.mark is None:
        words.remove(f"mark={e.mark}")
    if p.use is None:
        words = [w for w in words if not w.startswith("use=")]
    return " ".join(words)


class _Words:
    """A cursor over the words of one line, with errors that say where and what."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.words = line.split()
        self.i = 0

    def error(self, message: str) -> ListingError:
        where = f"word {self.i + 1}" if self.i < len(self.words) else "end of line"
        return ListingError(self.line, f"{where}: {message}")

    def peek(self) -> str | None:
        return self.words[self.i] if self.i < len(self.words) else None

    def take(self, what: str = "more words") -> str:
        word = self.peek()
        if word is None:
            raise self.error(f"expected {what}, but the line ends")
        self.i += 1
        return word

    def take_if(self, word: str) -> bool:
        if self.peek() == word:
            self.i += 1
            return True
        return False

    def number(self, text: str, what: str, limit: int = 2**64, base: int = 10) -> int:
        try:
            value = int(text, base)
        except ValueError:
            raise self.error(f"{what} {text!r} is not a number") from None
        if not 0 <= value < limit or (base == 10 and not text.isdigit()):
            raise self.error(f"{what} {text!r} is out of range")
        return value

    def keyed(self, key: str, limit: int = 2**64, base: int = 10) -> int:
        word = self.take(f"{key}=")
        if not word.startswith(key + "="):
            self.i -= 1
            raise self.error(f"expected {key}=, found {word!r}")
        return self.number(word[len(key) + 1:], key, limit, base)

    def keyed_if(self, key: str, limit: int = 2**64) -> int | None:
        word = self.peek()
        if word is None or not word.startswith(key + "="):
            return None
        return self.keyed(key, limit)

    def text_if(self, key: str) -> str | None:
        word = self.peek()
        if word is None or not word.startswith(key + "="):
            return None
        self.i += 1
        return word[len(key) + 1:]

    def is_int(self) -> bool:
        word = self.peek()
        return word is not None and word.isdigit()


def _address(w: _Words, key: str) -> IPv4Address:
    word = w.take(f"{key}=")
    if not word.startswith(key + "="):
        w.i -= 1
        raise w.error(f"expected {key}=, found {word!r}")
    text = word[len(key) + 1:]
    if ":" in text:
        raise w.error("IPv6 entries are not modelled (natlab is IPv4 only)")
    try:
        return _ipv4(text)
    except AddressValueError:
        w.i -= 1
        raise w.error(f"{key} {text!r} is not an IPv4 address") from None


@lru_cache(maxsize=4096)
def _ipv4(text: str) -> IPv4Address:
    """IPv4Address(text), remembered: a listing repeats a few addresses on every line."""
    return IPv4Address(text)


def _tuple(w: _Words, proto: int) -> Tuple:
    src = _address(w, "src")
    dst = _address(w, "dst")
    if proto in PORT_PROTOS:
        return Tuple(proto, src, dst, w.keyed("sport", 1 << 16), w.keyed("dport", 1 << 16))
    if proto == Proto.ICMP:
        type_, code = w.keyed("type", 256), w.keyed("code", 256)
        return Tuple.icmp(src, dst, type_, code, w.keyed("id", 1 << 16))
    if proto == GRE:
        keys = []
        for key in ("srckey", "dstkey"):
            word = w.peek() or ""
            if not word.startswith(key + "=0x"):
                raise w.error(f"expected {key}=0x..., found {word!r}")
            keys.append(w.number(w.take()[len(key) + 3:], key, 1 << 16, base=16))
        return Tuple(proto, src, dst, keys[0], keys[1])
    return Tuple(proto, src, dst)


def _counters(w: _Words) -> None:
    if w.keyed_if("packets") is not None:
        w.keyed("bytes")


def _parse(line: str, *, pattern: bool) -> EntryPattern:
    w = _Words(line)
    if not w.words:
        raise w.error("empty line")
    if w.peek() == "ipv6":
        raise w.error("IPv6 entries are not modelled (natlab is IPv4 only)")
    if w.take_if(L3_IPV4[0]) and w.take() != str(L3_IPV4[1]):
        w.i -= 1
        raise w.error("expected 2 after ipv4")
    name = w.take("a protocol name")
    if name not in _L4_NUMBERS and name != "unknown":
        w.i -= 1
        raise w.error(f"expected a protocol name (tcp, udp, icmp, ..., unknown), found {name!r}")
    known = _L4_NUMBERS.get(name)
    if known is not None and pattern and not (w.is_int() and w.peek() == str(known)):
        proto = known   # a pattern may leave out the protocol number
    else:
        proto = w.number(w.take(), "protocol number", 256)
        if l4_name(proto) != name:
            w.i -= 1
            raise w.error(f"protocol {proto} is printed as {l4_name(proto)!r}, not {name!r}")
    if proto == 58:
        raise w.error("protocol 58 (icmpv6) is tracked for IPv6 only: the kernel lists no IPv4 "
                      "entry with it, and natlab is IPv4 only")
    timeout = w.number(w.take(), "timeout", 1 << 32) if w.is_int() else None
    state: TcpState | None = None
    word = w.peek()
    if word is not None and "=" not in word and not word.startswith("["):
        if not _STATE_WORD.fullmatch(word):
            raise w.error(f"expected a timeout, a state or src=, found {word!r}")
        w.take()
        if proto == Proto.TCP:
            if word not in TcpState.__members__:
                w.i -= 1
                raise w.error(f"{word!r} is not a TCP conntrack state")
            state = TcpState[word]
        # SCTP and DCCP print their own state words; Entry has no place for them.
    orig = _tuple(w, proto)
    zone_orig = w.keyed_if("zone-orig", 1 << 16)
    _counters(w)
    unreplied = w.take_if("[UNREPLIED]")
    reply = _tuple(w, proto)
    zone_reply = w.keyed_if("zone-reply", 1 << 16)
    _counters(w)
    assured = False
    if not (w.take_if("[HW_OFFLOAD]") or w.take_if("[OFFLOAD]")):
        assured = w.take_if("[ASSURED]")
    mark = w.keyed_if("mark", 1 << 32)
    if mark is None and not pattern:
        raise w.error(f"expected mark=, found {w.peek()!r}")
    w.keyed_if("secmark", 1 << 32)
    w.text_if("secctx")
    zone = w.keyed_if("zone", 1 << 16)
    w.keyed_if("delta-time")
    for key in ("[start=", "[stop="):
        if (w.peek() or "").startswith(key):
            while not w.take().endswith("]"):
                if w.peek() is None:
                    raise w.error(f"{key}...] is not closed")
    w.text_if("helper")
    use = w.keyed_if("use", 1 << 32)
    if use is None and not pattern:
        raise w.error(f"expected use=, found {w.peek()!r}")
    id_ = w.keyed_if("id", 1 << 32)
    w.text_if("labels")
    if w.peek() is not None:
        raise w.error(f"unexpected {w.peek()!r}")
    return EntryPattern(orig=orig, reply=reply, timeout=timeout, state=state,
                        unreplied=unreplied, assured=assured, mark=mark, zone=zone or 0,
                        zone_orig=zone_orig, zone_reply=zone_reply, use=use, id=id_)


def parse_line(line: str) -> Entry:
    """One `conntrack -L` line (plain or `-o extended`, with or without `-o id`) as an Entry.
    Raises ListingError naming the word that does not fit the grammar."""
    p = _parse(line, pattern=False)
    assert p.mark is not None
    return Entry(orig=p.orig, reply=p.reply, timeout=p.timeout, state=p.state,
                 unreplied=p.unreplied, assured=p.assured, mark=p.mark, zone=p.zone,
                 zone_orig=p.zone_orig, zone_reply=p.zone_reply, use=p.use, id=p.id)


def parse_pattern(line: str) -> EntryPattern:
    """An `[expect]` line: the same grammar, but timeout, TCP state, mark, use and id may be
    left out, and so may the protocol number after a known name (`udp src=...`). A number right
    after the name that equals the protocol's number is read as that number
    (`udp 17 17 src=...` expects timeout 17)."""
    return _parse(line, pattern=True)


def _is_ipv6_line(line: str) -> bool:
    words = line.split()
    return bool(words) and (words[0] == "ipv6" or any(
        w.startswith("src=") and ":" in w for w in words[:6]))


def parse_listing(text: str, *, on_skip: Callable[[str], None] | None = None) -> list[Entry]:
    """Every entry line of a `conntrack -L` output. Blank lines, the `conntrack v1.4.7 ...
    flow entries have been shown.` summary and IPv6 entries are skipped (each skipped
    non-blank line is passed to `on_skip` if given); anything else that does not parse raises
    ListingError."""
    entries: list[Entry] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith(SUMMARY_PREFIX) or _is_ipv6_line(line):
            if on_skip is not None:
                on_skip(line)
            continue
        entries.append(parse_line(line))
    return entries
