"""The gateway's rules: one syntax-free AST, and the two readers that build it.

- `ast`: the frozen tree (Ruleset, Chain, Rule, Match, targets, NAT ranges) and the two
  rule errors;
- `iptables` (file structure), `iptables_rule` (one rule's options), `xtables_names`
  (extension names and option tables): iptables-restore text;
- `nft` (scanner and structure), `nft_rule` (one rule's statements): nft text;
- shared by both: `cursor` (the token walk and per-line errors), `common` (ports, addresses,
  NAT ranges, protocol and flag names), `checks` (the kernel's table-wide checks),
  `builtin_chains` (the xtables built-in chains per table, with hooks and priorities).

Callers import from the module that holds a name (`nat.rules.ast`, `nat.rules.iptables`,
`nat.rules.nft`): the package itself loads nothing, so `nat.hook_table` (which the nft reader
uses to refuse chains it cannot place) can import the AST without a cycle.
"""
