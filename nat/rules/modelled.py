"""What the model refuses to run although the parsers read it: rules whose effect it does not
build. The parsers know every REJECT answer (so that rulesets as nft and iptables print them
stay readable), but the model builds only the TCP reset (nat/reject.py); an ICMP error of the
gateway's own (nf_send_unreach) would need the IP id the kernel picks, its source address
choice, rate limits and the quoted bytes, none of which the model writes yet. Running such a
rule as a silent DROP would hide a packet the kernel sends, so the rule is refused, by line.
"""

from __future__ import annotations

from nat.rules.ast import MODELLED_REJECT, Reject, Ruleset, UnsupportedRule


def check_modelled(ruleset: Ruleset) -> None:
    """Raise UnsupportedRule for the first rule whose target the model cannot carry out."""
    for chain in ruleset.chains:
        for rule in chain.rules:
            target = rule.target
            if isinstance(target, Reject) and target.with_ not in MODELLED_REJECT:
                written = (f"reject ({target.with_})" if ruleset.source_syntax == "nft"
                           else f"REJECT --reject-with {target.with_}")
                raise UnsupportedRule(
                    rule.lineno, f"{written} (the model sends no ICMP error of its own; only "
                    "the TCP reset is modelled)", rule.source)
