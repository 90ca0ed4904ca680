"""The model's configuration for a spec: the gateway's devices and routes, its ruleset as the
model reads it, its sysctls and kernel profile, built from the spec and the facts a run recorded.

The one place where a `topologies` value becomes a `nat` value (so the model never imports the
topology package), and the one place that decides which text the model parses (design.md: the
walls between the rooms). No root, no namespaces: judging and the model-only run both start here.
"""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from experiments.backends import BACKEND
from experiments.plan import SetRules, rules_after_changes
from experiments.spec import RulesStep, Spec, SpecError
from nat.hook_table import ChainNotModelled
from nat.netdev import Device, NetView, RouteEntry
from nat.pipeline import GatewayConfig
from nat.profile import LINUX_LATEST, KernelProfile, profile_for_release
from nat.rules.ast import RuleError, Ruleset, UnsupportedRule
from nat.rules.modelled import check_modelled
from nat.sysctl import Sysctls
from topologies.description import Topology
from topologies.ifindex import interface_indexes


def netview_for(topology: Topology) -> NetView:
    """The gateway host of `topology` as a NetView, with the interface indexes natlab gives
    the interfaces when it builds the topology (topologies.ifindex.interface_indexes)."""
    gw = topology.gateway_host
    indexes = interface_indexes(topology)
    devices = tuple(
        Device(intf.name, indexes[(gw.name, intf.name)], (intf.address,))
        for intf in gw.interfaces
    )
    routes = []
    for r in gw.routes:
        dev = r.dev
        if dev is None and r.via is not None:
            dev = next((i.name for i in gw.interfaces if r.via in i.network), None)
        if dev is None:
            continue
        routes.append(RouteEntry(IPv4Network(r.dest), dev, r.via))
    return NetView(devices, tuple(routes), forwarding=gw.forwarding,
                   neighbours=neighbours(topology))


def neighbours(topology: Topology) -> frozenset[IPv4Address]:
    """Every address a host other than the gateway owns on a link the gateway is on: the
    next hops the gateway's ARP requests get an answer for."""
    gw = topology.gateway
    linked = {e.host for seg in topology.segments
              if any(x.host == gw for x in seg.endpoints) for e in seg.endpoints}
    return frozenset(a for h in topology.hosts if h.name in linked and h.name != gw
                     for a in h.addresses())


def model_ruleset(spec: Spec, fed: str | None = None) -> Ruleset:
    """The rules as the model reads them: the very text the kernel was fed when known (for the
    nft backend without nft text in the spec, that is iptables-restore-translate's output);
    otherwise the spec's own text for its backend."""
    backend = BACKEND[spec.backend]
    nft_given = backend.native_nft and (fed is not None or spec.nft is not None)
    if fed is not None:
        text = fed
    else:
        text = spec.nft if nft_given and spec.nft is not None else spec.rules
    return backend.model_parser(nft_given)(text)


class UnmodeledRules(SpecError):
    """Rules the kernel takes but the model refuses (a match, target or chain outside its
    scope). `natlab model` and `check --model` refuse the spec with it; `natlab run` runs the
    spec on the kernel alone and reports UNMODELED."""


def move_ruleset(spec: Spec, move: SetRules, fed: str | None = None) -> Ruleset:
    """A `rules` step's ruleset as the model reads it: as `model_ruleset`, with the step's
    own `rules` and `nft` texts in place of the spec's."""
    backend = BACKEND[spec.backend]
    if fed is not None:
        return backend.model_parser(backend.native_nft)(fed)
    nft_given = backend.native_nft and move.nft is not None
    text = move.nft if nft_given and move.nft is not None else move.rules
    return backend.model_parser(nft_given)(text)


def check_rules(spec: Spec) -> None:
    """Parse the gateway's rules as the model will (nft text for the nft backend when given,
    else the iptables-restore text); a construct the model does not support, or malformed
    text, is a SpecError naming the field and the line inside it."""
    backend = BACKEND[spec.backend]
    if backend.native_nft and spec.nft is not None:
        field, text = "nft", spec.nft
    else:
        field, text = "rules", spec.rules
    texts = [(field, text)]
    after = rules_after_changes(spec)
    for i, step in enumerate(spec.steps):
        if i in after:
            texts.append((f"steps.{i}.change", after[i]))
        elif isinstance(step, RulesStep):
            texts.append((f"steps.{i}.nft", step.nft) if backend.native_nft and step.nft
                         is not None else (f"steps.{i}.rules", step.rules))
    for field, text in texts:
        _check_text(spec, backend.model_parser(field.endswith("nft")), field, text)


def _check_text(spec: Spec, parser: Callable[[str], Ruleset], field: str, text: str) -> None:
    try:
        check_modelled(parser(text))
    except RuleError as e:
        message = str(e)
        file_line = _line_in_file(spec.path, text, e.lineno)
        prefix = f"line {e.lineno}:"
        if file_line is not None and message.startswith(prefix):
            message = f"line {e.lineno} (line {file_line} of the file):" + message[len(prefix):]
        if isinstance(e, (UnsupportedRule, ChainNotModelled)):
            raise UnmodeledRules(spec.path, field, message) from None
        raise SpecError(spec.path, field, message) from None


def _line_in_file(path: Path, text: str, lineno: int) -> int | None:
    """Where line `lineno` of `text` is in the spec file, when the text is written there
    verbatim (a multi-line string without escapes); None when it cannot be told."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if not text.strip() or raw.count(text) != 1:
        return None
    return raw[: raw.index(text)].count("\n") + lineno


def model_config(spec: Spec, kernel_release: str, sysctls: dict[str, str],
                 ruleset_fed: str | None = None) -> GatewayConfig:
    """The gateway as the model runs it for a recorded run: the recorded netfilter sysctls
    under the spec's own, the ruleset as the kernel was fed it, the profile of the kernel
    release that ran."""
    netfilter = {k: v for k, v in sysctls.items() if k.startswith("net.netfilter.")}
    return GatewayConfig(netview_for(spec.topology), model_ruleset(spec, ruleset_fed),
                         Sysctls.from_mapping({**netfilter, **spec.sysctls}),
                         profile_for_release(kernel_release))


def spec_config(spec: Spec, profile: KernelProfile = LINUX_LATEST) -> GatewayConfig:
    """The gateway as the model runs it from the spec alone (`natlab model`: nothing recorded)."""
    return GatewayConfig(netview_for(spec.topology), model_ruleset(spec),
                         Sysctls.from_mapping(spec.sysctls), profile)
