"""experiments/rules_delta.py: a `change` (iptables-restore --noflush text) applied to a
ruleset's text, giving the whole ruleset after it, as the model and the kernel both load it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from experiments.rules_delta import DeltaError, apply_delta
from experiments.spec import SpecError, load_spec
from nat.rules.iptables import parse_iptables_restore

MASQ = "*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n"
DNAT = "-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8"


def _rules(text: str) -> list[str]:
    return [f"{c.name} {r.target}" for c in parse_iptables_restore(text).chains
            for r in c.rules]


def test_append_insert_delete_flush() -> None:
    after = apply_delta(MASQ, f"*nat\n{DNAT}\nCOMMIT\n")
    assert [r.split()[0] for r in _rules(after)] == ["POSTROUTING", "PREROUTING"]
    first = apply_delta(after, "*nat\n-I POSTROUTING -o lan0 -j ACCEPT\nCOMMIT\n")
    assert [r.split()[1] for r in _rules(first)] == ["ACCEPT", "MASQUERADE", "DNAT"]
    gone = apply_delta(after, "*nat\n" + DNAT.replace("-A", "-D", 1) + "\nCOMMIT\n")
    assert _rules(gone) == _rules(MASQ)
    assert "PREROUTING" in gone                         # the chain stays, empty
    flushed = apply_delta(after, "*nat\n-F\nCOMMIT\n")
    assert _rules(flushed) == [] and ":POSTROUTING" in flushed
    by_number = apply_delta(after, "*nat\n-D POSTROUTING 1\nCOMMIT\n")
    assert [r.split()[1] for r in _rules(by_number)] == ["DNAT"]


def test_a_new_table_and_user_chains() -> None:
    after = apply_delta(MASQ, "*filter\n-N LOGDROP\n-A LOGDROP -j DROP\n"
                        "-A FORWARD -p udp --dport 9 -j LOGDROP\nCOMMIT\n")
    assert {c.table for c in parse_iptables_restore(after).chains} == {"nat", "filter"}
    with pytest.raises(DeltaError, match="still jumped to"):
        apply_delta(after, "*filter\n-F LOGDROP\n-X LOGDROP\nCOMMIT\n")
    after = apply_delta(after, "*filter\n-F\n-X LOGDROP\nCOMMIT\n")
    assert "LOGDROP" not in after


@pytest.mark.parametrize(("change", "words"), [
    ("*nat\n-D PREROUTING -p udp -j ACCEPT\nCOMMIT\n", "no such rule"),
    ("*nat\n-D POSTROUTING 5\nCOMMIT\n", "no rule with that number"),
    ("*nat\n-A NOPE -j ACCEPT\nCOMMIT\n", "does not exist"),
    ("*nat\n-I POSTROUTING 3 -j ACCEPT\nCOMMIT\n", "too big"),
    ("*nat\n-R POSTROUTING 1 -j ACCEPT\nCOMMIT\n", "-A, -I, -D"),
    ("-A POSTROUTING -j ACCEPT\n", "outside"),
    ("*nosuch\n-F\nCOMMIT\n", "no table"),
])
def test_a_change_that_cannot_apply_names_its_line(change: str, words: str) -> None:
    with pytest.raises(DeltaError) as info:
        apply_delta(MASQ, change)
    assert words in str(info.value) and str(info.value).startswith("line ")


@given(st.lists(st.sampled_from(["--dport 1", "--dport 2", "--dport 3", "--sport 4"]),
                max_size=6))
def test_what_is_appended_can_be_deleted_as_written(specs: list[str]) -> None:
    """Appending rules and deleting them again, written the same way, gives back the
    ruleset's rules (whatever else was appended in between)."""
    text = MASQ
    for spec in specs:
        text = apply_delta(text, f"*nat\n-A PREROUTING -p udp {spec} -j ACCEPT\nCOMMIT\n")
    for spec in reversed(specs):
        text = apply_delta(text, f"*nat\n-D PREROUTING -p udp {spec} -j ACCEPT\nCOMMIT\n")
    assert _rules(text) == _rules(MASQ)


def test_quoted_words_survive_the_round_trip() -> None:
    after = apply_delta(MASQ, '*nat\n-A POSTROUTING -m comment --comment "two words" '
                        "-j ACCEPT\nCOMMIT\n")
    assert '--comment "two words"' in after
    assert apply_delta(after, '*nat\n-D POSTROUTING -m comment --comment "two words" '
                       "-j ACCEPT\nCOMMIT\n").count("-A ") == 1


def _spec(tmp_path: Path, body: str, backend_lines: str = "") -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'topology = "home"\n{backend_lines}rules = """\n{MASQ}"""\n' + body)
    return path


def test_the_spec_names_a_change_that_cannot_apply(tmp_path: Path) -> None:
    path = _spec(tmp_path, '[[steps]]\naction = "rules"\nchange = "*nat\\n-D PREROUTING 1\\n'
                 'COMMIT\\n"\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.field_path == "steps.0.change" and "no rule with that number" in str(
        info.value)
    both = _spec(tmp_path, '[[steps]]\naction = "rules"\nrules = "x"\nchange = "*nat\\n-F\\n'
                 'COMMIT\\n"\n')
    with pytest.raises(SpecError, match="either the whole ruleset"):
        load_spec(both)
    nft = _spec(tmp_path, '[[steps]]\naction = "rules"\nchange = "*nat\\n-F\\nCOMMIT\\n"\n',
                'backend = "nft"\nnft = "table ip nat { }"\n')
    with pytest.raises(SpecError, match="the nft backend loaded nft text"):
        load_spec(nft)
