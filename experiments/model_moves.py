"""The steps that change the world (`rules`, `conntrack`, `sysctl`, `host_rules`), applied to
the modelled gateway: the one place that turns a plan's move into calls on `nat`.

Both model runs use it: the differential replay (experiments/judging/replay.py) applies each
move at the moment the kernel run recorded for it, `natlab model` in sequence. A `rules` move
is parsed from the text the kernel was fed when it is known (the replay), else from the
spec's text for the backend (`natlab model`), as for the initial ruleset. Rootless: no
kernel side, no namespaces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from experiments.plan import ConntrackChange, CtMatch, Move, SetHostRules, SetRules, SetSysctls
from nat import ctnetlink
from nat.ctnetlink import CtFilter
from nat.pipeline import Gateway
from nat.rules.ast import Ruleset
from nat.sysctl import Sysctls
from nat.tuple import Proto, Tuple

PROTO_NUMBERS: dict[str, int] = {"tcp": Proto.TCP, "udp": Proto.UDP, "icmp": Proto.ICMP}

# A `rules` move's ruleset as the model reads it, given the text the kernel was fed for it
# (None when there was no kernel run): the caller knows the spec's backend.
RulesetOf = Callable[[SetRules, str | None], Ruleset]


def ct_filter(match: CtMatch) -> CtFilter:
    """A plan's conntrack fields as the model's filter."""
    return CtFilter(None if match.proto is None else PROTO_NUMBERS[match.proto],
                    match.src, match.dst, match.sport, match.dport,
                    match.reply_src, match.reply_dst, match.reply_sport, match.reply_dport)


class GatewayMoves:
    """Applies moves to one modelled gateway, keeping the sysctls written so far (a `sysctl`
    move changes the named values and keeps the others: `sysctls` starts as the mapping the
    gateway's configuration was built from)."""

    def __init__(self, sysctls: Mapping[str, str], ruleset_of: RulesetOf) -> None:
        self.sysctls = dict(sysctls)
        self.ruleset_of = ruleset_of

    def apply(self, gw: Gateway, move: Move, now: float, fed: str | None = None) -> str:
        """Apply `move` to `gw` at `now` (`fed`: the ruleset text the kernel loaded for a
        `rules` move); returns a one-line note of what changed."""
        match move:
            case SetRules():
                gw.load_ruleset(self.ruleset_of(move, fed))
                return "ruleset replaced"
            case SetSysctls(values=values):
                self.sysctls.update(values)
                gw.set_sysctls(Sysctls.from_mapping(self.sysctls))
                return "sysctls: " + ", ".join(f"{k} = {v}" for k, v in values)
            case SetHostRules(host=host):
                return f"{host}'s rules replaced (not the gateway's: nothing to model here)"
            case ConntrackChange():
                return _conntrack(gw, move, now)
        raise TypeError(f"not a move: {move!r}")  # pragma: no cover - the union is closed


def _conntrack(gw: Gateway, move: ConntrackChange, now: float) -> str:
    table = gw.table
    m = move.match
    if move.op == "flush":
        return f"conntrack -F: {len(ctnetlink.flush(table))} entries deleted"
    if move.op == "delete":
        return f"conntrack -D: {len(ctnetlink.delete(table, ct_filter(m), now))} deleted"
    if move.op == "update":
        done = ctnetlink.update(table, ct_filter(m), now, timeout=move.timeout, mark=move.mark)
        return f"conntrack -U: {len(done)} updated"
    assert m.proto is not None and m.src is not None and m.dst is not None
    assert m.reply_src is not None and m.reply_dst is not None and move.timeout is not None
    proto = PROTO_NUMBERS[m.proto]
    orig = Tuple(proto, m.src, m.dst, m.sport or 0, m.dport or 0)
    reply = Tuple(proto, m.reply_src, m.reply_dst, m.reply_sport or 0, m.reply_dport or 0)
    conn = ctnetlink.insert(table, orig, reply, now, timeout=move.timeout, status=move.status,
                            mark=move.mark or 0)
    return f"conntrack -I: entry #{conn.id} {conn.orig} / {conn.reply}"
