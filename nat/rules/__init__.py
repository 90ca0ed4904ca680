"""The gateway's rules: one syntax-free AST, and the two readers that build it.

`ast` holds the tree (and the two rule errors); `iptables` reads iptables-restore text and
`nft` reads nft text. The names most callers need are re-exported here.
"""

from nat.rules.ast import RuleError, Ruleset, RuleSyntaxError, UnsupportedRule
from nat.rules.iptables import parse_iptables_restore
from nat.rules.nft import parse_nft

__all__ = [
    "RuleError",
    "RuleSyntaxError",
    "Ruleset",
    "UnsupportedRule",
    "parse_iptables_restore",
    "parse_nft",
]
