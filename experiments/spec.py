"""Experiment specs: a TOML file becomes a validated, frozen `Spec` (or one clear error).

A spec says which topology to build, which rules the gateway gets, which sysctls to set, and
which traffic the hosts send, step by step. The contract with the kernel run and the model is
in docs/spec-format.md; this module is its only reader.

Validation happens in three layers, and each error names exactly one field:
1. TOML syntax (tomllib), reported with line and column;
2. shape and types (the pydantic 2 models of `experiments.spec_model`, extra keys forbidden,
   no silent coercion: "80" is not a port and 1 is not `true`);
3. meaning: every host a step names exists in the topology, `to` is an IPv4 address or a
   host name, checkpoint names are unique, sysctl names look like `net.…`, and so on.

Every failure is a `SpecError` whose str() is one line, `FILE: FIELD: message`, where FIELD is
the dotted path of the offending key (`steps.2.sport`, counting steps from 0). The gateway
rules are not parsed here: the kernel is the judge of those. `check_rules`
(experiments.model_config) parses them with
the model's parser, for `natlab model`, where a construct the model does not support is an
error.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from experiments.backends import BACKENDS, BackendName
from experiments.errors import UserError
from experiments.expect_patterns import PatternError, parse_entry_pattern, parse_relation
from experiments.rulefiles import Syntax, file_reading_problem
from experiments.rules_delta import DeltaError, apply_delta
from experiments.spec_model import (
    MAX_SLEEP,
    STEP_KINDS,
    CheckpointStep,
    ConntrackStep,
    Expect,
    HostRulesStep,
    PingStep,
    RawStep,
    Received,
    RulesStep,
    SleepStep,
    SpecFile,
    Step,
    SysctlStep,
    TcpStep,
    UdpStep,
)
from nat.listing import ListingError, parse_pattern
from nat.packet import MalformedPacket, parse
from nat.sysctl import Sysctls
from topologies.description import Topology
from topologies.inline import TopologyError, topology_from_mapping, topology_to_mapping
from topologies.presets import PRESETS, preset

__all__ = [
    "MAX_SLEEP", "STEP_KINDS", "CheckpointStep", "ConntrackStep", "Expect", "HostRulesStep",
    "RulesStep", "SysctlStep", "PingStep", "RawStep", "Received",
    "SleepStep", "Spec", "SpecError", "Step", "TcpStep", "UdpStep", "conntrack_line_problem",
    "load_spec", "spec_from_bytes", "spec_from_mapping", "spec_hash", "spec_to_mapping", "toml_key",
]

SPEC_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
CAPTURE_RE = re.compile(r"\*|\$[A-Za-z_][A-Za-z0-9_]*")
CHECKPOINT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SYSCTL_NAME_RE = re.compile(r"net(\.[A-Za-z0-9_+-]+)+")
TCP_FLAG_LETTERS = "FSRPAUEC"
# Not writable inside a network namespace (machine notes): the run would fail half-way.
READ_ONLY_SYSCTLS = frozenset({"net.netfilter.nf_conntrack_max", "net.nf_conntrack_max"})


class SpecError(UserError):
    """A spec that cannot be used. str() is one line: `FILE: FIELD: message`."""

    def __init__(self, path: Path | str, field_path: str, message: str) -> None:
        self.path = Path(path)
        self.field_path = _printable(field_path)
        self.message = _printable(" ".join(message.split()))
        where = f"{self.path}: {field_path}" if field_path else str(self.path)
        super().__init__(f"{where}: {self.message}")


# --- the models (s------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """A validated experiment. `topology_preset` is the preset's name when the spec named one
    (None for an inline `[topology]` table)."""

    path: Path
    name: str
    description: str
    topology: Topology
    backend: BackendName
    rules: str
    nft: str | None
    sysctls: dict[str, str]
    host_rules: dict[str, str]
    steps: tuple[Step, ...]
    expect: Expect | None
    xfail: str | None
    topology_preset: str | None = None
    backends: tuple[BackendName, ...] = BACKENDS

    @property
    def summary(self) -> str:
        """The description's first paragraph as one line (for `natlab list`)."""
        paragraph = self.description.strip().split("\n\n", 1)[0]
        return " ".join(paragraph.split())

    def checkpoints(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if isinstance(s, CheckpointStep))


# --- loading -----------------------------------------------------------------------------------


def load_spec(path: Path, *, backend: BackendName | None = None) -> Spec:
    """Read, parse and validate the spec at `path`; `backend` overrides the spec's own."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(path, "", f"cannot read the spec: {e.strerror or e}") from None
    return spec_from_bytes(raw, path, backend=backend)


def spec_from_bytes(raw: bytes, path: Path, *, backend: BackendName | None = None) -> Spec:
    """A spec from the bytes of its file (read by the caller: a bundle's reader reads it
    with its own bounds); errors name `path`."""
    path = Path(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(path, "", f"not UTF-8 text (byte {e.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _toml_error(path, e) from None
    except RecursionError:      # tomllib nests arrays and inline tables by recursion
        raise SpecError(path, "TOML", "nested too deeply") from None
    return spec_from_mapping(data, path, backend=backend)


def spec_hash(spec_path: Path) -> str:
    """sha256 of the spec file's bytes (hex): what a result bundle records."""
    return hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()


_TOML_WHERE = re.compile(r"^(.*) \(at (line (\d+), column (\d+)|end of document)\)$", re.S)


def _toml_error(path: Path, e: tomllib.TOMLDecodeError) -> SpecError:
    m = _TOML_WHERE.match(str(e))
    if m is None:
        return SpecError(path, "TOML", str(e))
    return SpecError(path, m.group(2), f"invalid TOML: {m.group(1)}")


def spec_from_mapping(
    data: Mapping[str, Any], path: Path, *, backend: BackendName | None = None
) -> Spec:
    """Validate a spec already parsed from TOML (or made by `spec_to_mapping`)."""
    path = Path(path)
    try:
        top = SpecFile.model_validate(dict(data))
    except ValidationError as e:
        raise _pydantic_error(path, e, SpecFile, ()) from None
    if backend is not None and backend not in BACKENDS:
        raise SpecError(path, "backend", f"unknown backend {backend!r} (one of {BACKENDS})")
    name = top.name if top.name is not None else path.stem
    if not SPEC_NAME_RE.fullmatch(name):
        field = "name" if top.name is not None else "(file name)"
        raise SpecError(path, field, f"{name!r} is not a usable name: letters, digits, "
                        "'_', '.', '-', starting with a letter or digit, at most 64")
    chosen = backend or top.backend
    if len(set(top.backends)) != len(top.backends):
        raise SpecError(path, "backends", "a backend is listed twice")
    if chosen not in top.backends:
        raise SpecError(path, "backends", f"this spec runs only on {', '.join(top.backends)}, "
                        f"not on {chosen}")
    topology, preset_name = _topology(path, top.topology)
    steps = _steps(path, top.steps)
    sysctls = _sysctls(path, top.sysctls)
    spec = Spec(
        path=path,
        name=name,
        description=top.description,
        topology=topology,
        backend=chosen,
        rules=top.rules,
        nft=top.nft,
        sysctls=sysctls,
        host_rules=dict(top.host_rules),
        steps=steps,
        expect=top.expect,
        xfail=top.xfail,
        topology_preset=preset_name,
        backends=tuple(top.backends),
    )
    _check_references(spec)
    _check_moves(spec)
    _check_rule_files(spec)
    return spec


def _check_rule_files(spec: Spec) -> None:
    """No rule text may name a file of the machine (`include`, `--modprobe`): refused here,
    before anything is built (experiments.rulefiles)."""
    texts: list[tuple[str, str, Syntax]] = [("rules", spec.rules, "iptables"),
                                            ("nft", spec.nft or "", "nft")]
    texts += [(f"host_rules.{toml_key(h)}", t, "iptables") for h, t in spec.host_rules.items()]
    for i, step in enumerate(spec.steps):
        if isinstance(step, RulesStep):
            texts += [(f"steps.{i}.rules", step.rules, "iptables"),
                      (f"steps.{i}.nft", step.nft or "", "nft"),
                      (f"steps.{i}.change", step.change or "", "iptables")]
        elif isinstance(step, HostRulesStep):
            texts.append((f"steps.{i}.rules", step.rules, "iptables"))
    for field, text, syntax in texts:
        problem = file_reading_problem(text, syntax)
        if problem:
            raise SpecError(spec.path, field, problem)


def _topology(path: Path, value: Any) -> tuple[Topology, str | None]:
    if value is None:
        raise SpecError(path, "topology", 'missing: a preset name (like "home") or a '
                        "[topology] table")
    if isinstance(value, str):
        if value not in PRESETS:
            raise SpecError(path, "topology", f"unknown preset {value!r} "
                            f"(known: {', '.join(sorted(PRESETS))})")
        return preset(value), value
    if isinstance(value, Mapping):
        try:
            return topology_from_mapping(value, "topology"), None
        except TopologyError as e:
            raise SpecError(path, e.where, e.message) from None
    raise SpecError(path, "topology", "expected a preset name or a [topology] table, got "
                    f"{_show(value)}")


def _steps(path: Path, value: Any) -> tuple[Step, ...]:
    if value is None:
        raise SpecError(path, "steps", "missing: add at least one [[steps]] table")
    if not isinstance(value, list):
        raise SpecError(path, "steps", f"expected an array of tables ([[steps]]), got "
                        f"{_show(value)}")
    if not value:
        raise SpecError(path, "steps", "empty: add at least one [[steps]] table")
    kinds = ", ".join(STEP_KINDS)
    steps: list[Step] = []
    for i, item in enumerate(value):
        where = f"steps.{i}"
        if not isinstance(item, Mapping):
            raise SpecError(path, where, f"expected a table, got {_show(item)}")
        if "action" not in item:
            raise SpecError(path, f"{where}.action", f"missing (one of: {kinds})")
        action = item["action"]
        if not isinstance(action, str) or action not in STEP_KINDS:
            raise SpecError(path, f"{where}.action",
                            f"unknown step kind {_show(action)} (one of: {kinds})")
        cls = STEP_KINDS[action]
        try:
            step = cls.model_validate(dict(item))
        except ValidationError as e:
            raise _pydantic_error(path, e, cls, ("steps", i)) from None
        steps.append(typing.cast(Step, step))
    return tuple(steps)


def _sysctls(path: Path, values: Mapping[str, Any], field: str = "sysctls") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        where = f"{field}.{toml_key(key)}"
        if not SYSCTL_NAME_RE.fullmatch(key):
            raise SpecError(path, where, "not a sysctl name: natlab sets only network "
                            "sysctls, spelled with dots, like net.netfilter.nf_conntrack_tcp_loose")
        if key in READ_ONLY_SYSCTLS:
            raise SpecError(path, where, "read-only inside a network namespace")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise SpecError(path, where, f"expected a string or an integer, got {_show(value)}")
        text = str(value)
        if not text.strip() or "\n" in text or "=" in text:
            raise SpecError(path, where, f"{text!r} is not a sysctl value")
        out[key] = text
    try:
        Sysctls.from_mapping(out)
    except ValueError as e:
        bad = next((k for k in out if k in str(e)), "")
        raise SpecError(path, f"{field}.{toml_key(bad)}" if bad else field,
                        str(e).replace(f"sysctl {bad}: ", "")) from None
    return out


# --- steps that change the world ----------------------------------------------------------------

_CT_FILTER = ("proto", "src", "dst", "sport", "dport", "reply_src", "reply_dst", "reply_sport",
              "reply_dport")
_CT_ALLOWED: dict[str, tuple[str, ...]] = {
    "flush": (),
    "delete": _CT_FILTER,
    # conntrack-tools 1.4.7 `-U` with `-p udp` fails ("Operation not supported", checked on
    # 6.18): an update filters by addresses only.
    "update": ("src", "dst", "reply_src", "reply_dst", "timeout", "mark"),
    "insert": (*_CT_FILTER, "timeout", "status", "mark"),
}


def _check_moves(spec: Spec) -> None:
    """The new step kinds' meaning: hosts exist, sysctls are allowed, conntrack filters are
    addresses and ports (each op takes only the fields `conntrack` takes for it)."""
    path = spec.path
    current, nft_from = spec.rules, ("nft" if spec.nft is not None else None)
    for i, step in enumerate(spec.steps):
        w = f"steps.{i}"
        if isinstance(step, RulesStep):
            if step.change is None:
                current = step.rules
                nft_from = f"{w}.nft" if step.nft is not None else None
                continue
            if step.rules or step.nft is not None:
                raise SpecError(path, f"{w}.change", "a step gives either the whole ruleset "
                                "(`rules`, `nft`) or a `change`, not both")
            if spec.backend == "nft" and nft_from is not None:
                raise SpecError(path, f"{w}.change", f"the nft backend loaded nft text "
                                f"({nft_from}); a change is iptables-restore text: give the "
                                "whole ruleset in `rules` and `nft` instead")
            try:
                current = apply_delta(current, step.change)
            except DeltaError as e:
                raise SpecError(path, f"{w}.change", str(e)) from None
        elif isinstance(step, SysctlStep):
            if not step.set:
                raise SpecError(path, f"{w}.set", "empty: name at least one sysctl")
            _sysctls(path, step.set, f"{w}.set")
        elif isinstance(step, HostRulesStep):
            if step.host not in {h.name for h in spec.topology.hosts}:
                raise SpecError(path, f"{w}.host", f"unknown host {step.host!r}")
            if step.host == spec.topology.gateway:
                raise SpecError(path, f"{w}.host", "the gateway's rules change with a "
                                "`rules` step, not host_rules")
        elif isinstance(step, ConntrackStep):
            _check_conntrack_step(path, w, step)


def _check_conntrack_step(path: Path, w: str, step: ConntrackStep) -> None:
    allowed = _CT_ALLOWED[step.op]
    for field in (*_CT_FILTER, "timeout", "status", "mark"):
        value = getattr(step, field)
        if value not in (None, ()) and field not in allowed:
            raise SpecError(path, f"{w}.{field}", f"not taken by op = {step.op!r} (it takes: "
                            f"{', '.join(allowed) or 'nothing'})")
    for field in ("src", "dst", "reply_src", "reply_dst"):
        value = getattr(step, field)
        if value is not None:
            try:
                IPv4Address(value)
            except ValueError:
                raise SpecError(path, f"{w}.{field}", f"{value!r} is not an IPv4 address"
                                ) from None
    ports = ("sport", "dport", "reply_sport", "reply_dport")
    if step.proto not in ("tcp", "udp"):
        for field in ports:
            if getattr(step, field) is not None:
                raise SpecError(path, f"{w}.{field}", "ports need proto = \"tcp\" or \"udp\"")
    if step.op == "update" and step.timeout is None and step.mark is None:
        raise SpecError(path, w, "an update sets `timeout` or `mark` (or both)")
    if step.op == "insert":
        if step.proto != "udp":
            raise SpecError(path, f"{w}.proto", "insert takes proto = \"udp\" (a TCP entry "
                            "needs window state the model cannot make up)")
        for field in ("src", "dst", "sport", "dport", "timeout"):
            if getattr(step, field) is None:
                raise SpecError(path, f"{w}.{field}", "missing: an insert gives the whole "
                                "original tuple and a timeout")


def toml_key(key: str) -> str:
    """A key as a TOML file would spell it in a dotted path: bare when it can be, else
    quoted with escapes (so a path is always one line)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", key):
        return key
    return _printable(json.dumps(key, ensure_ascii=False))


def _printable(text: str) -> str:
    """`text` with every unprintable character escaped (\\n, \\x07, \\ud7fc)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# --- cross references --------------------------------------------------------------------------


def _check_references(spec: Spec) -> None:
    hosts = {h.name for h in spec.topology.hosts}
    path = spec.path
    host_list = ", ".join(h.name for h in spec.topology.hosts)

    def host(name: str, where: str) -> None:
        if name not in hosts:
            raise SpecError(path, where, f"unknown host {name!r} (hosts: {host_list})")

    def target(value: str, where: str) -> None:
        if value in hosts:
            return
        try:
            IPv4Address(value)
        except ValueError:
            if re.fullmatch(r"[0-9.]+", value):
                raise SpecError(path, where, f"{value!r} is not an IPv4 address") from None
            raise SpecError(path, where, f"{value!r} is neither an IPv4 address nor a host "
                            f"(hosts: {host_list})") from None

    checkpoints: set[str] = set()
    for i, step in enumerate(spec.steps):
        w = f"steps.{i}"
        if isinstance(step, UdpStep | TcpStep | PingStep | RawStep):
            host(step.from_, f"{w}.from")
        if isinstance(step, UdpStep | TcpStep | PingStep):
            target(step.to, f"{w}.to")
        if isinstance(step, UdpStep | TcpStep):
            if step.server is not None:
                host(step.server, f"{w}.server")
            if not step.listen and step.reply:
                raise SpecError(path, f"{w}.reply",
                                "a reply needs a listener, but listen = false")
        if isinstance(step, RawStep):
            _check_raw(path, w, step, target)
        _check_payload_sizes(path, w, step)
        if isinstance(step, CheckpointStep):
            if not CHECKPOINT_NAME_RE.fullmatch(step.name):
                raise SpecError(path, f"{w}.name", f"{step.name!r} is not a usable name: "
                                "letters, digits, '_', '.', '-', at most 64")
            if step.name == "final":
                raise SpecError(path, f"{w}.name", "'final' is the name of the snapshot taken "
                                "after the last step; call the checkpoint something else")
            if step.name in checkpoints:
                raise SpecError(path, f"{w}.name", f"duplicate checkpoint {step.name!r}")
            checkpoints.add(step.name)
    for name in spec.host_rules:
        where = f"host_rules.{toml_key(name)}"
        host(name, where)
        if name == spec.topology.gateway:
            raise SpecError(path, where, "the gateway's rules go in `rules`, not host_rules")
    if spec.xfail is not None and not spec.xfail.strip():
        raise SpecError(path, "xfail", "give the reason for the known divergence")
    if spec.expect is not None:
        for i, line in enumerate(spec.expect.conntrack):
            problem = conntrack_line_problem(line)
            if problem:
                raise SpecError(path, f"expect.conntrack.{i}", problem)
        for i, rec in enumerate(spec.expect.received):
            w = f"expect.received.{i}"
            host(rec.host, f"{w}.host")
            for field in ("src", "dst"):
                value = getattr(rec, field)
                if value is not None and value != "*" and not value.startswith("$"):
                    target(value, f"{w}.{field}")
            if rec.proto == "icmp":
                for field in ("sport", "dport"):
                    if getattr(rec, field) is not None:
                        raise SpecError(path, f"{w}.{field}", "ICMP has no ports")
            for field in ("sport", "dport"):
                port = getattr(rec, field)
                if isinstance(port, int) and not 1 <= port <= 65535:
                    raise SpecError(path, f"{w}.{field}", f"{port} is not a port (1-65535)")
                if isinstance(port, str) and not CAPTURE_RE.fullmatch(port):
                    raise SpecError(path, f"{w}.{field}", f"{port!r} is not a port, * or "
                                    "$NAME (a capture: $ then letters, digits, '_')")
            if rec.proto != "tcp" and rec.flags is not None:
                raise SpecError(path, f"{w}.flags", "only TCP segments have flags")
            for field in ("icmp_type", "icmp_code", "inner"):
                if rec.proto != "icmp" and getattr(rec, field) is not None:
                    raise SpecError(path, f"{w}.{field}", "only for proto = \"icmp\"")
        check_predicate_fields(path, spec.expect, set(checkpoints))


def check_predicate_fields(path: Path, expect: Expect, checkpoints: set[str]) -> None:
    """The predicate parts of [expect]: patterns and relations that read, counts given one
    way, snapshots that exist, and every capture a relation names taken by some pattern."""
    captured: set[str] = set()
    counted: list[tuple[str, Any]] = [(f"expect.entry.{i}", e)
                                      for i, e in enumerate(expect.entry)]
    counted += [(f"expect.received.{i}", r) for i, r in enumerate(expect.received)]
    for w, item in counted:
        given = [k for k in ("count", "at_least", "at_most") if getattr(item, k) is not None]
        if "count" in given and len(given) > 1:
            raise SpecError(path, f"{w}.count", "give count alone, or at_least / at_most")
        if (item.at_least is not None and item.at_most is not None
                and item.at_least > item.at_most):
            raise SpecError(path, f"{w}.at_most", f"{item.at_most} is below at_least "
                            f"{item.at_least}")
        if item.at != "final" and item.at not in checkpoints:
            known = ", ".join(sorted(checkpoints)) or "none"
            raise SpecError(path, f"{w}.at", f"no checkpoint named {item.at!r} (checkpoints: "
                            f"{known}; or \"final\", the end of the run)")
        for field in ("match", "inner"):
            text = getattr(item, field, None)
            if text is None:
                continue
            try:
                pattern = parse_entry_pattern(text)
            except PatternError as e:
                raise SpecError(path, f"{w}.{field}", str(e)) from None
            if field == "inner" and pattern.reply:
                raise SpecError(path, f"{w}.inner", "the quoted header has one direction: "
                                "give src/dst/sport/dport once")
            captured |= pattern.captures()
        for field in ("src", "dst", "sport", "dport"):
            value = getattr(item, field, None)
            if isinstance(value, str) and value.startswith("$"):
                captured.add(value[1:])
        timeout = getattr(item, "timeout", None)
        if timeout is not None and not 0 <= timeout[0] <= timeout[1]:
            raise SpecError(path, f"{w}.timeout", f"[{timeout[0]}, {timeout[1]}] is not "
                            "[low, high] with 0 <= low <= high")
    for i, text in enumerate(expect.relations):
        try:
            relation = parse_relation(text)
        except PatternError as e:
            raise SpecError(path, f"expect.relations.{i}", str(e)) from None
        missing = sorted(relation.captures() - captured)
        if missing:
            raise SpecError(path, f"expect.relations.{i}", f"${missing[0]} is captured by no "
                            "pattern of [expect] (write it in an entry's match or a received "
                            "field)")


def _check_payload_sizes(path: Path, w: str, step: Any) -> None:
    """Every payload must fit in one IPv4 packet (65535 bytes with the IP and L4 headers):
    the packets are built whole, by the model's world and by the raw step."""
    fields: tuple[str, ...]
    if isinstance(step, UdpStep):
        fields, header = ("payload", "reply"), 28
    elif isinstance(step, TcpStep):
        fields, header = ("send", "reply"), 40
    elif isinstance(step, RawStep) and step.hex is None:
        fields = ("payload",)
        header = {"tcp": 40, 6: 40, "udp": 28, 17: 28, "icmp": 28, 1: 28}.get(step.proto, 20)
    else:
        return
    for name in fields:
        value = getattr(step, name)
        if value is not None and len(value.encode()) > 65535 - header:
            raise SpecError(path, f"{w}.{name}", f"{len(value.encode())} bytes: more than one "
                            f"IPv4 packet carries (at most {65535 - header})")


def _check_raw(path: Path, w: str, step: RawStep, target: Any) -> None:
    field_form = [
        f for f in ("proto", "src", "dst", "sport", "dport", "flags", "seq", "ack", "window",
                    "icmp_type", "icmp_code", "id", "ttl", "payload")
        if getattr(step, f) is not None
    ]
    if step.hex is not None:
        if field_form:
            raise SpecError(path, f"{w}.{field_form[0]}",
                            "give either `hex` (the whole packet) or fields, not both")
        text = "".join(step.hex.split())
        if not re.fullmatch(r"([0-9A-Fa-f]{2})+", text):
            raise SpecError(path, f"{w}.hex", "not an even number of hexadecimal digits")
        if len(text) < 40 or text[0] != "4":
            raise SpecError(path, f"{w}.hex", "not an IPv4 packet (needs at least a 20-byte "
                            "header starting with version 4)")
        try:  # the packet is rebuilt from its parsed form to be sent and replayed
            parse(bytes.fromhex(text))
        except MalformedPacket as e:
            raise SpecError(path, f"{w}.hex", f"a malformed packet: {e}") from None
        return
    if step.proto is None:
        raise SpecError(path, f"{w}.proto", 'missing ("tcp", "udp", "icmp" or a number), '
                        "or give the whole packet as `hex`")
    proto = step.proto
    if isinstance(proto, bool) or (isinstance(proto, int) and not 0 <= proto <= 255) or (
            isinstance(proto, str) and proto not in ("tcp", "udp", "icmp")):
        raise SpecError(path, f"{w}.proto",
                        f'expected "tcp", "udp", "icmp" or a number 0..255, got {_show(proto)}')
    name = {6: "tcp", 17: "udp", 1: "icmp"}.get(proto, str(proto)) if isinstance(
        proto, int) else proto
    if step.dst is None:
        raise SpecError(path, f"{w}.dst", "missing (an IPv4 address or a host name)")
    target(step.dst, f"{w}.dst")
    if step.src is not None:
        try:
            IPv4Address(step.src)
        except ValueError:
            raise SpecError(path, f"{w}.src", f"{step.src!r} is not an IPv4 address") from None
    if name in ("tcp", "udp"):
        for f in ("sport", "dport"):
            if getattr(step, f) is None:
                raise SpecError(path, f"{w}.{f}", f"missing (a {name} packet needs ports)")
    else:
        for f in ("sport", "dport"):
            if getattr(step, f) is not None:
                raise SpecError(path, f"{w}.{f}", f"a {name} packet has no ports")
    tcp_only = ("flags", "seq", "ack", "window")
    icmp_only = ("icmp_type", "icmp_code", "id")
    for f in tcp_only if name != "tcp" else ():
        if getattr(step, f) is not None:
            raise SpecError(path, f"{w}.{f}", f"only for tcp packets, not {name}")
    for f in icmp_only if name != "icmp" else ():
        if getattr(step, f) is not None:
            raise SpecError(path, f"{w}.{f}", f"only for icmp packets, not {name}")
    if step.flags is not None:
        bad = [c for c in step.flags.upper() if c not in TCP_FLAG_LETTERS]
        if bad or not step.flags:
            raise SpecError(path, f"{w}.flags", f"{step.flags!r}: TCP flags are letters "
                            f"from {TCP_FLAG_LETTERS} (like \"S\", \"SA\", \"FA\", \"R\")")


def conntrack_line_problem(line: str) -> str | None:
    """Why `line` is not an expected `conntrack -L` line (None if it is one), by the grammar
    of nat.listing.parse_pattern: timeout, TCP state, mark and use may be left out."""
    try:
        parse_pattern(line)
    except ListingError as e:
        return e.message
    return None


# --- pydantic errors as one line ----------------------------------------------------------------


def _pydantic_error(
    path: Path, error: ValidationError, model: type[BaseModel], prefix: tuple[str | int, ...]
) -> SpecError:
    errors = error.errors(include_url=False)
    # An unknown key explains a missing one (`dprot` for `dport`): report it first.
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(first["loc"])
    where = ".".join(toml_key(p) if isinstance(p, str) else str(p) for p in (*prefix, *loc))
    kind = first["type"]
    if kind == "missing":
        message = "missing"
    elif kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        message = ("unknown key" + (f", did you mean {close[0]}?" if close else "")
                   + (f" (expected one of: {', '.join(allowed)})" if allowed else ""))
    else:
        message = f"{first['msg']}, got {_show(first.get('input'))}"
    return SpecError(path, where, message)


def _allowed_keys(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed at `loc` inside `model`, following fields and array items."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = [a for a in get_args(current) if a is not Ellipsis]
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items()
                          if part in (n, f.alias, f.validation_alias)), None)
            current = field.annotation if field is not None else None
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [str(f.validation_alias or f.alias or n) for n, f in current.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    """`X | None` -> X."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _show(value: object) -> str:
    """A value as the user wrote it in TOML, short."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return f"string {text if len(text) <= 40 else text[:37] + '...'}"
    if isinstance(value, int | float):
        return f"number {value!r}"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


# --- back to a mapping -------------------------------------------------------------------------


def spec_to_mapping(spec: Spec) -> dict[str, Any]:
    """The spec as TOML-shaped data (keys as a spec file spells them, no None values);
    `spec_from_mapping` reads it back equal. A preset topology stays a preset name."""
    out: dict[str, Any] = {"name": spec.name}
    if spec.description:
        out["description"] = spec.description
    if spec.topology_preset is not None and PRESETS.get(spec.topology_preset) == spec.topology:
        out["topology"] = spec.topology_preset
    else:
        out["topology"] = topology_to_mapping(spec.topology)
    out["backend"] = spec.backend
    if spec.backends != BACKENDS:
        out["backends"] = list(spec.backends)
    out["rules"] = spec.rules
    if spec.nft is not None:
        out["nft"] = spec.nft
    if spec.sysctls:
        out["sysctls"] = dict(spec.sysctls)
    if spec.host_rules:
        out["host_rules"] = dict(spec.host_rules)
    out["steps"] = [s.model_dump(by_alias=True, exclude_none=True) for s in spec.steps]
    if spec.expect is not None:
        out["expect"] = spec.expect.model_dump(exclude_defaults=True)
    if spec.xfail is not None:
        out["xfail"] = spec.xfail
    return out
