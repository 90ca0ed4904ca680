"""Steps that change the world, applied to the running namespaces: a gateway ruleset replaced,
the conntrack table changed (`conntrack -F/-D/-I/-U`), gateway sysctls written, another
host's ruleset replaced.

Every command is an argument list built from the plan's typed values (addresses, ports,
protocol names, numbers): spec text never reaches a shell; rulesets go on stdin
(experiments/kernel/rules.py). The caller records the moment each move took effect (the end
of the command, on the captures' clock) for the model's replay.
"""

from __future__ import annotations

from collections.abc import Mapping

from experiments.backends import BackendName
from experiments.kernel.rules import RulesError, replace_rules, set_sysctls, tool_message
from experiments.plan import ConntrackChange, CtMatch, Move, SetHostRules, SetRules, SetSysctls
from topologies.hostexec import CommandError, HostHandle

CONNTRACK = "conntrack"
_NOTHING_MATCHED = "0 flow entries have been"   # conntrack -D/-U exits 1 with this, no error


def apply_move(hosts: Mapping[str, HostHandle], gateway: str, backend: BackendName,
               move: Move) -> tuple[str, str | None]:
    """Apply `move`; returns (what was done, the ruleset text fed for a `rules` move)."""
    gw = hosts[gateway]
    match move:
        case SetRules():
            loaded = replace_rules(gw, backend, move.rules, move.nft)
            return "gateway ruleset replaced", loaded.fed
        case SetHostRules():
            replace_rules(hosts[move.host], backend, move.rules, None)
            return f"{move.host}'s ruleset replaced", None
        case SetSysctls(values=values):
            set_sysctls(gw, dict(values))
            return "sysctls: " + ", ".join(f"{k} = {v}" for k, v in values), None
        case ConntrackChange():
            return conntrack_change(gw, move), None
    raise TypeError(f"not a move: {move!r}")  # pragma: no cover - the union is closed


def conntrack_argv(move: ConntrackChange) -> tuple[str, ...]:
    """The `conntrack` command for a change (conntrack-tools 1.4.7 options)."""
    op = {"flush": "-F", "delete": "-D", "insert": "-I", "update": "-U"}[move.op]
    argv = [CONNTRACK, op, *_match_args(move.match)]
    if move.timeout is not None:
        argv += ["-t", str(move.timeout)]
    if move.status:
        argv += ["-u", ",".join(move.status)]
    if move.mark is not None:
        argv += ["-m" if move.op == "update" else "--mark", str(move.mark)]
    return tuple(argv)


def _match_args(m: CtMatch) -> list[str]:
    args: list[str] = []
    for option, value in (("-p", m.proto), ("-s", m.src), ("-d", m.dst),
                          ("--sport", m.sport), ("--dport", m.dport),
                          ("-r", m.reply_src), ("-q", m.reply_dst),
                          ("--reply-port-src", m.reply_sport),
                          ("--reply-port-dst", m.reply_dport)):
        if value is not None:
            args += [option, str(value)]
    return args


def conntrack_change(gw: HostHandle, move: ConntrackChange) -> str:
    """Run the `conntrack` command in the gateway; its summary line. A delete or update that
    matched nothing is an outcome (the tool exits 1 saying so), not an error."""
    argv = conntrack_argv(move)
    try:
        proc = gw.run(argv, check=False)
    except CommandError as e:
        raise RulesError.refused("changing the conntrack table", argv, e) from None
    message = tool_message(proc.stderr)
    if proc.returncode != 0 and _NOTHING_MATCHED not in message:
        raise RulesError("changing the conntrack table", argv, gw.name, message,
                         proc.returncode, proc.stderr.decode(errors="replace"))
    return message
