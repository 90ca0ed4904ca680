"""The names iptables' extensions go by, the options each takes, and how they write values.

Data only, read by `iptables_rule.py`: the match modules (libxt_*.so) and targets iptables
1.8.9 knows (the model reads a few and refuses the others by name), the long options of each
for getopt_long()'s prefix matching, libxt_REJECT's --reject-with aliases, libxt_icmp's type
and code names, and how libxtables and the NAT target parsers write ports.
"""

from __future__ import annotations

from nat.rules.ast import PROTO_NUMBERS, NatFlag
from nat.rules.common import TCP_FLAG_BITS, PortProblem, PortSpelling

# Match modules (-m) the model reads, and others iptables knows but the model does not.
SUPPORTED_MODULES: frozenset[str] = frozenset(
    {"tcp", "udp", "icmp", "conntrack", "state", "multiport", "comment"})
KNOWN_MODULES: frozenset[str] = frozenset({
    "addrtype", "ah", "bpf", "cgroup", "cluster", "connbytes", "connlabel", "connlimit",
    "connmark", "cpu", "dccp", "devgroup", "dscp", "ecn", "esp", "hashlimit", "helper",
    "hl", "icmp6", "iprange", "ipvs", "length", "limit", "mac", "mark", "nfacct", "osf",
    "owner", "physdev", "pkttype", "policy", "quota", "rateest", "realm", "recent", "rpfilter",
    "sctp", "set", "socket", "statistic", "string", "tcpmss", "time", "tos", "ttl", "u32",
    "udplite",
})
# Targets iptables knows that the model does not evaluate.
KNOWN_TARGETS: frozenset[str] = frozenset({
    "AUDIT", "CHECKSUM", "CLASSIFY", "CLUSTERIP", "CONNMARK", "CONNSECMARK", "CT", "DSCP",
    "ECN", "HMARK", "IDLETIMER", "LED", "MARK", "NETMAP", "NFLOG", "NFQUEUE",
    "NOTRACK", "QUEUE", "RATEEST", "SECMARK", "SET", "SYNPROXY", "TCPMSS", "TCPOPTSTRIP",
    "TEE", "TOS", "TPROXY", "TRACE", "TTL", "ULOG",
})
NAT_TARGET_NAMES = ("SNAT", "DNAT", "MASQUERADE", "REDIRECT")

# --reject-with names and aliases (libxt_REJECT) -> the canonical name.
REJECT_ALIASES: dict[str, str] = {
    "icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
    "icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
    "icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
    "icmp-proto-unreachable": "icmp-proto-unreachable",
    "proto-unreach": "icmp-proto-unreachable",
    "icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
    "icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
    "icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
    "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset",
}

# ICMP names that stand for a type and one code (libxt_icmp's table), beyond ICMP_TYPE_NUMBERS.
ICMP_CODE_NAMES: dict[str, tuple[int, int]] = {
    "network-unreachable": (3, 0), "host-unreachable": (3, 1),
    "protocol-unreachable": (3, 2), "port-unreachable": (3, 3),
    "fragmentation-needed": (3, 4), "source-route-failed": (3, 5),
    "network-unknown": (3, 6), "host-unknown": (3, 7), "network-prohibited": (3, 9),
    "host-prohibited": (3, 10), "TOS-network-unreachable": (3, 11),
    "TOS-host-unreachable": (3, 12), "communication-prohibited": (3, 13),
    "host-precedence-violation": (3, 14), "precedence-cutoff": (3, 15),
    "network-redirect": (5, 0), "host-redirect": (5, 1), "TOS-network-redirect": (5, 2),
    "TOS-host-redirect": (5, 3), "ttl-zero-during-transit": (11, 0),
    "ttl-zero-during-reassembly": (11, 1), "ip-header-bad": (12, 0),
    "required-option-missing": (12, 1),
}
ICMP_ALIASES: dict[str, int] = {"ping": 8, "pong": 0, "ttl-exceeded": 11}

# libxt_SNAT/DNAT/MASQUERADE/REDIRECT accept ports with these protocols (ICMP: the id), and do
# not look at `!` before -p (measured: `! -p tcp -j DNAT --to-destination a:5` loads).
PORT_PROTOS = frozenset({PROTO_NUMBERS[p] for p in ("tcp", "udp", "sctp", "dccp", "icmp")})
MULTIPORT_PROTOS = frozenset({PROTO_NUMBERS[p] for p in ("tcp", "udp", "udplite", "sctp",
                                                         "dccp")})

# Match ports (xtables_parse_port_range()): `p`, `a:b`, `:b` (from 0), `a:` (to 65535).
MATCH_PORTS = PortSpelling(":", open_ends=True, empty_hi_is_lo=False, lowest=0,
                           shape_first=False, messages={
    PortProblem.SERVICE: (True, "service name {part!r} (needs /etc/services)"),
    PortProblem.NOT_A_NUMBER: (False, "invalid port/service {part!r} specified"),
    PortProblem.OUT_OF_RANGE: (False, "invalid port/service {part!r} specified"),
    PortProblem.MIN_ABOVE_MAX: (False, "invalid portrange (min > max)"),
})
# NAT target ports (libxt_SNAT/DNAT/MASQUERADE/REDIRECT): `p` or `a-b`, from 1.
NAT_PORTS = PortSpelling("-", open_ends=False, empty_hi_is_lo=True, lowest=1,
                         shape_first=False, messages={
    PortProblem.SERVICE: (False, "Port {part!r} not valid"),
    PortProblem.NOT_A_NUMBER: (False, "Port {part!r} not valid"),
    PortProblem.OUT_OF_RANGE: (False, "Port {part!r} not valid"),
    PortProblem.MIN_ABOVE_MAX: (False, "Port range {text!r} funky"),
})
# --tcp-flags names (libxt_tcp).
TCP_FLAG_NAMES: dict[str, int] = {**{k.upper(): v for k, v in TCP_FLAG_BITS.items()},
                                  "ALL": 0x3F, "NONE": 0}
# --random, --random-fully, --persistent (the NAT targets' flag options).
NAT_FLAG_OPTIONS: dict[str, NatFlag] = {"--random": NatFlag.PROTO_RANDOM,
                                        "--random-fully": NatFlag.PROTO_RANDOM_FULLY,
                                        "--persistent": NatFlag.PERSISTENT}

# Long options, for getopt_long()-style prefix matching (iptables merges these tables).
GENERIC_LONG_OPTIONS: frozenset[str] = frozenset({
    "--protocol", "--source", "--src", "--destination", "--dst", "--in-interface",
    "--out-interface", "--jump", "--goto", "--match", "--fragment", "--set-counters",
    "--ipv4", "--ipv6"})
MODULE_OPTIONS: dict[str, frozenset[str]] = {
    "tcp": frozenset({"--source-port", "--sport", "--destination-port", "--dport", "--syn",
                      "--tcp-flags", "--tcp-option"}),
    "udp": frozenset({"--source-port", "--sport", "--destination-port", "--dport"}),
    "icmp": frozenset({"--icmp-type"}),
    "conntrack": frozenset({"--ctstate", "--ctproto", "--ctorigsrc", "--ctorigdst",
                            "--ctreplsrc", "--ctrepldst", "--ctorigsrcport", "--ctorigdstport",
                            "--ctreplsrcport", "--ctrepldstport", "--ctstatus", "--ctexpire",
                            "--ctdir"}),
    "state": frozenset({"--state"}),
    "multiport": frozenset({"--source-ports", "--sports", "--destination-ports", "--dports",
                            "--ports"}),
    "comment": frozenset({"--comment"}),
}
TARGET_OPTIONS: dict[str, frozenset[str]] = {
    "REJECT": frozenset({"--reject-with"}),
    "LOG": frozenset({"--log-prefix", "--log-level", "--log-tcp-sequence", "--log-tcp-options",
                      "--log-ip-options", "--log-uid", "--log-macdecode"}),
    "SNAT": frozenset({"--to-source", "--random", "--random-fully", "--persistent"}),
    "DNAT": frozenset({"--to-destination", "--random", "--persistent"}),
    "MASQUERADE": frozenset({"--to-ports", "--random", "--random-fully"}),
    "REDIRECT": frozenset({"--to-ports", "--random"}),
}

# --log-level names (libxt_LOG), besides the numbers 0-7.
LOG_LEVELS: frozenset[str] = frozenset({
    "emerg", "alert", "crit", "error", "err", "warning", "warn", "notice", "info", "debug",
    "panic",
})
