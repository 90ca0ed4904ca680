"""Spec loading: the seeds load, every bad spec in the corpus fails with one line naming the
file and the field, and specs round-trip through their mapping form."""

from __future__ import annotations

import re
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.cli import main
from experiments.library import builtin_spec_paths
from experiments.model_config import check_rules
from experiments.spec import (
    BACKENDS,
    CheckpointStep,
    PingStep,
    RawStep,
    SleepStep,
    Spec,
    SpecError,
    TcpStep,
    UdpStep,
    load_spec,
    spec_from_mapping,
    spec_hash,
    spec_to_mapping,
    toml_key,
)
from topologies.presets import HOME

BAD = Path(__file__).parent / "bad_specs"
BAD_SPECS = sorted(BAD.glob("*.toml"))


def _header(path: Path) -> tuple[str, str]:
    """The `# field:` and `# says:` lines each corpus file starts with."""
    field = says = ""
    for raw in path.read_bytes().splitlines()[:2]:
        line = raw.decode("ascii")
        if line.startswith("# field:"):
            field = line.removeprefix("# field:").strip()
        elif line.startswith("# says:"):
            says = line.removeprefix("# says:").strip()
    return field, says


def test_corpus_is_big_enough() -> None:
    assert len(BAD_SPECS) >= 30


@pytest.mark.parametrize("path", BAD_SPECS, ids=lambda p: p.stem)
def test_bad_spec_is_one_line_naming_file_and_field(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    field, says = _header(path)
    status = main(["model", str(path)])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    prefix = f"natlab: {path}: {field}: " if field else f"natlab: {path}: "
    assert lines[0].startswith(prefix), (lines[0], prefix)
    assert len(lines[0]) > len(prefix) + 3  # and a message follows
    assert says in lines[0]


@pytest.mark.parametrize("path", BAD_SPECS, ids=lambda p: p.stem)
def test_bad_spec_raises_spec_error_with_field(path: Path) -> None:
    field, _ = _header(path)
    with pytest.raises(SpecError) as info:
        check_rules(load_spec(path))
    assert info.value.field_path == field
    assert info.value.path == path
    assert "\n" not in str(info.value)


def test_seeds_load() -> None:
    names = {p.stem for p in builtin_spec_paths()}
    assert {"seed-dnat-udp", "seed-snat-tcp"} <= names
    for path in builtin_spec_paths():
        spec = load_spec(path)
        assert spec.name == path.stem
        assert spec.description and spec.summary
        assert "\n" not in spec.summary
        check_rules(spec)


def test_seed_dnat_udp_is_the_contract_example() -> None:
    spec = load_spec(Path("experiments/specs/seed-dnat-udp.toml"))
    assert spec.topology == HOME and spec.topology_preset == "home"
    assert spec.backend == "iptables"
    assert "-j DNAT --to-destination 192.168.1.8" in spec.rules
    (step,) = spec.steps
    assert isinstance(step, UdpStep)
    assert (step.from_, step.to, step.sport, step.dport) == ("desktop", "192.168.1.9", 37611,
                                                             9999)
    assert (step.payload, step.reply, step.count, step.listen) == ("hello laptop",
                                                                   "hello desktop", 1, True)
    assert spec.nft is None and spec.xfail is None and spec.sysctls == {}


def test_seed_snat_tcp() -> None:
    spec = load_spec(Path("experiments/specs/seed-snat-tcp.toml"))
    (step,) = spec.steps
    assert isinstance(step, TcpStep)
    assert (step.from_, step.to, step.sport, step.dport, step.close) == (
        "laptop", "desktop", 37611, 443, "fin")
    assert "MASQUERADE" in spec.rules
    assert spec.expect is not None
    assert any("TIME_WAIT" in line for line in spec.expect.conntrack)


def test_backend_override(tmp_path: Path) -> None:
    spec = load_spec(Path("experiments/specs/seed-dnat-udp.toml"), backend="nft")
    assert spec.backend == "nft"
    with pytest.raises(SpecError, match="backend"):
        load_spec(Path("experiments/specs/seed-dnat-udp.toml"), backend="pf")  # type: ignore[arg-type]


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.toml")


def test_spec_hash_is_sha256_of_bytes(tmp_path: Path) -> None:
    import hashlib

    path = Path("experiments/specs/seed-dnat-udp.toml")
    assert spec_hash(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    copy = tmp_path / "x.toml"
    copy.write_bytes(path.read_bytes() + b"\n")
    assert spec_hash(copy) != spec_hash(path)


FULL = '''
name = "everything"
description = "every step kind"
topology = "home"
backend = "nft"
rules = """
*nat
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
"""
nft = "flush ruleset"
xfail = "a known divergence"
[sysctls]
"net.netfilter.nf_conntrack_tcp_loose" = 0
"net.ipv4.ip_forward" = "1"
[host_rules]
desktop = "*filter\\nCOMMIT\\n"
[[steps]]
action = "checkpoint"
name = "start"
[[steps]]
action = "udp"
from = "laptop"
to = "desktop"
sport = 1000
dport = 53
count = 3
interval = 1
server = "desktop"
[[steps]]
action = "tcp"
from = "laptop"
to = "203.0.113.10"
sport = 2000
dport = 80
close = "rst"
listen = false
[[steps]]
action = "ping"
from = "laptop"
to = "desktop"
id = 0
[[steps]]
action = "raw"
from = "desktop"
proto = "tcp"
dst = "gateway"
sport = 1
dport = 2
flags = "SA"
seq = 4294967295
[[steps]]
action = "raw"
from = "desktop"
proto = 47
dst = "203.0.113.1"
[[steps]]
action = "raw"
from = "desktop"
hex = "4500001c 0001 0000 4011 0000 cb00710a c0a80109 92eb270f 00080000"
[[steps]]
action = "sleep"
seconds = 2.5
[expect]
conntrack = ["""icmp 1 src=192.168.1.8 dst=203.0.113.10 type=8 code=0 id=0 \\
    src=203.0.113.10 dst=203.0.113.1 type=0 code=0 id=0"""]
[[expect.received]]
host = "desktop"
proto = "udp"
src = "203.0.113.1"
'''


def _full(tmp_path: Path) -> Spec:
    path = tmp_path / "full.toml"
    path.write_text(FULL)
    return load_spec(path)


def test_every_field_loads(tmp_path: Path) -> None:
    spec = _full(tmp_path)
    kinds = [type(s) for s in spec.steps]
    assert kinds == [CheckpointStep, UdpStep, TcpStep, PingStep, RawStep, RawStep, RawStep,
                     SleepStep]
    assert spec.sysctls == {"net.netfilter.nf_conntrack_tcp_loose": "0",
                            "net.ipv4.ip_forward": "1"}
    assert spec.checkpoints() == ("start",)
    udp = spec.steps[1]
    assert isinstance(udp, UdpStep) and udp.interval == 1.0 and udp.server == "desktop"
    raw = spec.steps[4]
    assert isinstance(raw, RawStep) and raw.seq == 2**32 - 1 and raw.proto == "tcp"
    assert spec.xfail == "a known divergence"


def test_steps_are_frozen(tmp_path: Path) -> None:
    spec = _full(tmp_path)
    with pytest.raises(Exception, match="frozen"):
        spec.steps[1].sport = 5  # type: ignore[union-attr]


def test_round_trip_through_mapping(tmp_path: Path) -> None:
    for spec in [_full(tmp_path), *(load_spec(p) for p in builtin_spec_paths())]:
        again = spec_from_mapping(spec_to_mapping(spec), spec.path)
        assert again == spec


def test_inline_topology_round_trips(tmp_path: Path) -> None:
    from topologies.inline import topology_to_mapping

    data = spec_to_mapping(_full(tmp_path))
    data["topology"] = topology_to_mapping(HOME)
    spec = spec_from_mapping(data, tmp_path / "inline.toml")
    assert spec.topology == HOME and spec.topology_preset is None
    assert spec_to_mapping(spec)["topology"] == topology_to_mapping(HOME)


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    path = tmp_path / "my-test.toml"
    path.write_text(FULL.replace('name = "everything"\n', ""))
    assert load_spec(path).name == "my-test"


def test_check_rules_names_the_nft_field(tmp_path: Path) -> None:
    path = tmp_path / "nft.toml"
    path.write_text(FULL.replace('nft = "flush ruleset"', 'nft = "add rule ip nat x bogus"'))
    spec = load_spec(path)
    with pytest.raises(SpecError) as info:
        check_rules(spec)
    assert info.value.field_path == "nft"
    # The same spec run with the iptables backend reads `rules` instead, which is fine.
    check_rules(load_spec(path, backend="iptables"))


# --- properties ------------------------------------------------------------------------------

_BASE = {"topology": "home", "steps": [{"action": "udp", "from": "desktop", "to": "laptop",
                                        "sport": 1, "dport": 1}]}


@settings(max_examples=200, deadline=None)
@given(sport=st.integers(-10, 70000), dport=st.integers(-10, 70000))
def test_ports_valid_exactly_in_range(sport: int, dport: int) -> None:
    data = {**_BASE, "steps": [{**_BASE["steps"][0], "sport": sport, "dport": dport}]}  # type: ignore[dict-item]
    ok = 1 <= sport <= 65535 and 1 <= dport <= 65535
    try:
        spec = spec_from_mapping(data, Path("p.toml"))
    except SpecError as e:
        assert not ok
        bad = "sport" if not 1 <= sport <= 65535 else "dport"
        assert e.field_path == f"steps.0.{bad}"
        assert str(e).startswith(f"p.toml: steps.0.{bad}: ")
    else:
        assert ok
        assert (spec.steps[0].sport, spec.steps[0].dport) == (sport, dport)  # type: ignore[union-attr]


@settings(max_examples=200, deadline=None)
@given(to=st.one_of(st.ip_addresses(v=4).map(str), st.text(max_size=20)))
def test_to_is_an_address_or_a_host(to: str) -> None:
    data = {**_BASE, "steps": [{**_BASE["steps"][0], "to": to}]}  # type: ignore[dict-item]
    hosts = {h.name for h in HOME.hosts}
    try:
        IPv4Address(to)
        valid = True
    except ValueError:
        valid = to in hosts
    try:
        spec_from_mapping(data, Path("p.toml"))
    except SpecError as e:
        assert not valid
        assert e.field_path == "steps.0.to"
        assert "\n" not in str(e)
    else:
        assert valid


@settings(max_examples=100, deadline=None)
@given(key=st.text(min_size=1, max_size=12).filter(lambda k: k not in {
    "name", "description", "topology", "backend", "backends", "rules", "nft", "sysctls",
    "host_rules", "steps", "expect", "xfail"}))
def test_any_unknown_top_level_key_is_named(key: str) -> None:
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**_BASE, key: 1}, Path("p.toml"))
    assert info.value.field_path == toml_key(key)
    assert "unknown key" in info.value.message
    assert re.fullmatch(r"[^\n]*", str(info.value))


def test_a_misspelt_key_is_named_with_the_likely_one() -> None:
    """`dprot` for `dport`: the unknown key is reported (not "dport: missing"), with the key
    it probably meant; a key like no other gets no guess."""
    step = {"action": "udp", "from": "laptop", "to": "desktop", "sport": 1000, "dprot": 53}
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**_BASE, "steps": [step]}, Path("p.toml"))
    assert info.value.field_path == "steps.0.dprot"
    assert info.value.message.startswith("unknown key, did you mean dport? (expected one of:")
    with pytest.raises(SpecError) as info:
        spec_from_mapping({**_BASE, "zzzzqq": 1}, Path("p.toml"))
    assert info.value.message.startswith("unknown key (expected one of:")


# --- the documentation's examples ------------------------------------------------------------

_DOC = Path(__file__).parents[2] / "docs" / "spec-format.md"
_DOC_BLOCKS = re.findall(r"```toml\n(.*?)```", _DOC.read_text(), re.S)
_STEP = '[[steps]]\naction = "udp"\nfrom = "{a}"\nto = "{b}"\nsport = 1\ndport = 2\n'


def test_doc_has_examples() -> None:
    assert len(_DOC_BLOCKS) >= 15


@pytest.mark.parametrize("block", _DOC_BLOCKS, ids=lambda b: b.splitlines()[0][:30])
def test_doc_example_loads(block: str, tmp_path: Path) -> None:
    """Every example in docs/spec-format.md is valid, completed into a spec if a fragment."""
    text = block
    if "topology" not in block:
        text = 'topology = "home"\n' + text
    if "[[steps]]" not in block:
        hosts = ("a", "b") if "[topology]" in block else ("laptop", "desktop")
        text += "\n" + _STEP.format(a=hosts[0], b=hosts[1])
    path = tmp_path / "doc.toml"
    path.write_text(text)
    spec = load_spec(path)
    check_rules(spec)


def test_rule_errors_name_the_line_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text(FULL.replace("-A POSTROUTING -o wan0 -j MASQUERADE",
                                 "-A POSTROUTING -o wan0 -j MASQUERADE\n-A BOGUS -j ACCEPT"))
    with pytest.raises(SpecError) as info:
        check_rules(load_spec(path, backend="iptables"))
    bogus_line = path.read_text().splitlines().index("-A BOGUS -j ACCEPT") + 1
    assert info.value.message.startswith(f"line 3 (line {bogus_line} of the file): ")
    # Written with escapes, the text is not in the file verbatim: only its own line is named.
    path.write_text(FULL.replace('rules = """\n*nat\n-A POSTROUTING -o wan0 -j MASQUERADE\n'
                                 'COMMIT\n"""', 'rules = "*nat\\n-A BOGUS -j ACCEPT\\nCOMMIT\\n"'))
    with pytest.raises(SpecError) as info:
        check_rules(load_spec(path, backend="iptables"))
    assert info.value.message.startswith("line 2: ")


def test_steps_can_be_built_in_python() -> None:
    """Other code (tests, generators) builds steps by field name; `action` is implied."""
    spec = load_spec(Path("experiments/specs/seed-dnat-udp.toml"))
    built = UdpStep(from_="desktop", to="192.168.1.9", sport=37611, dport=9999,
                    payload="hello laptop", reply="hello desktop")
    assert spec.steps == (built,)
    assert SleepStep(seconds=1).action == "sleep"


def test_backends_limits_where_a_spec_runs(tmp_path: Path) -> None:
    path = tmp_path / "nft-only.toml"
    path.write_text(FULL.replace('backend = "nft"', 'backend = "nft"\nbackends = ["nft"]'))
    spec = load_spec(path)
    assert spec.backends == ("nft",) and spec.backend == "nft"
    assert spec_from_mapping(spec_to_mapping(spec), path) == spec
    with pytest.raises(SpecError) as info:
        load_spec(path, backend="iptables")
    assert info.value.field_path == "backends"
    assert "runs only on nft, not on iptables" in str(info.value)
    path.write_text(FULL.replace('backend = "nft"', 'backends = ["nft"]'))
    with pytest.raises(SpecError, match="not on iptables"):
        load_spec(path)
    for bad, message in (('["nft", "nft"]', "listed twice"), ("[]", "at least 1"),
                         ('["pf"]', "Input should be")):
        path.write_text(FULL.replace('backend = "nft"', f'backend = "nft"\nbackends = {bad}'))
        with pytest.raises(SpecError, match=message) as info:
            load_spec(path)
        assert info.value.field_path.startswith("backends")


def test_library_specs_run_on_every_backend_unless_they_say_so() -> None:
    limited = {p.stem: load_spec(p).backends for p in builtin_spec_paths()
               if load_spec(p).backends != BACKENDS}
    assert limited == {"filter-prerouting": ("nft",), "filter-output-untracked": ("nft",)}
