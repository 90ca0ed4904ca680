"""The rules backends: one record each, the one place that says what a backend is.

A backend is one of the three ways a Linux box loads a ruleset (one per namespace and run:
iptables-legacy and iptables-nft must not be mixed):

- `iptables`: iptables-nft, iptables-restore text through the nf_tables kernel API;
- `iptables-legacy`: the same text through the x_tables API (net/ipv4/netfilter/ip_tables.c);
- `nft`: native nftables (`nft -f -`); a spec without nft text has its iptables-restore text
  translated by `iptables-restore-translate` first.

Each record carries the commands that load (from stdin, one transaction) and read back the
ruleset, the programs it needs with their Debian packages, and how the model reads the text the
kernel was fed. The kernel side (`experiments.kernel.rules`), the command line's choices, the
preflight checks and the model's configuration all read this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

from nat.rules.ast import Ruleset
from nat.rules.iptables import parse_iptables_restore
from nat.rules.nft import parse_nft

BackendName = Literal["iptables", "iptables-legacy", "nft"]
BACKENDS: tuple[BackendName, ...] = get_args(BackendName)

# The programs natlab runs, and the Debian package that provides each.
DEBIAN_PACKAGE: dict[str, str] = {
    "mnexec": "mininet",
    "bwrap": "bubblewrap",
    "ip": "iproute2",
    "ethtool": "ethtool",
    "sysctl": "procps",
    "conntrack": "conntrack",
    "tcpdump": "tcpdump",
    "iptables-restore": "iptables",
    "iptables-save": "iptables",
    "iptables-legacy-restore": "iptables",
    "iptables-legacy-save": "iptables",
    "iptables-restore-translate": "iptables",
    "nft": "nftables",
}

# What every kernel run needs, whatever the backend.
KERNEL_RUN_BINARIES: tuple[str, ...] = ("mnexec", "bwrap", "ip", "ethtool", "sysctl",
                                        "conntrack", "tcpdump")
# Translates iptables-restore text to nft text (for the nft backend without nft text).
TRANSLATE: tuple[str, ...] = ("iptables-restore-translate", "-f", "/dev/stdin")


@dataclass(frozen=True)
class Backend:
    """What one backend is."""

    name: BackendName
    restore: tuple[str, ...]        # loads the whole ruleset from stdin, atomically
    save: tuple[str, ...]           # prints the ruleset the kernel holds
    native_nft: bool                # takes nft text (else iptables-restore text)
    # iptables-legacy creates every built-in chain of a table it touches (so an empty *nat
    # still registers the NAT hooks); iptables-nft creates only the chains declared or used.
    all_builtin_chains: bool

    @property
    def binaries(self) -> tuple[str, ...]:
        """The programs this backend runs (load and read back; nft also translates)."""
        return (self.restore[0], self.save[0], *((TRANSLATE[0],) if self.native_nft else ()))

    def model_parser(self, nft_text_given: bool) -> Callable[[str], Ruleset]:
        """How the model reads this backend's ruleset text: nft text when the backend takes it
        and there is some (the spec's, or the translation the kernel was fed), else
        iptables-restore text as this backend loads it."""
        if self.native_nft and nft_text_given:
            return parse_nft
        every_chain = self.all_builtin_chains
        return lambda text: parse_iptables_restore(text, all_builtin_chains=every_chain)


BACKEND: dict[BackendName, Backend] = {
    "iptables": Backend("iptables", ("iptables-restore",), ("iptables-save",),
                        native_nft=False, all_builtin_chains=False),
    "iptables-legacy": Backend("iptables-legacy", ("iptables-legacy-restore",),
                               ("iptables-legacy-save",),
                               native_nft=False, all_builtin_chains=True),
    "nft": Backend("nft", ("nft", "-f", "-"), ("nft", "list", "ruleset"),
                   native_nft=True, all_builtin_chains=False),
}
assert tuple(BACKEND) == BACKENDS
