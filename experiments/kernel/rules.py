"""Loading a ruleset into a host and setting its sysctls, with the record of what was loaded.

Three backends load the same iptables-restore text in the three ways a Linux box can:
`iptables-restore` (iptables-nft: the nf_tables kernel API), `iptables-legacy-restore` (the
x_tables API), and `nft -f -` (native nftables; when the spec gives no nft text, the
iptables-restore text is translated with `iptables-restore-translate` first). Each loads the
whole ruleset in one transaction from stdin, so a bad rule leaves nothing half-loaded.

After loading, the ruleset is read back (`iptables-save`, `iptables-legacy-save`,
`nft list ruleset`) for the run's record: what the kernel holds, not what we meant to send.
One backend per namespace and run: iptables-legacy and iptables-nft must not be mixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Self

from experiments.backends import BACKEND, TRANSLATE, BackendName
from nat.rules.builtin_chains import chain_names
from topologies.hostexec import CommandError, HostHandle, KernelError

# The sysctls every run records besides the ones a spec sets.
RECORDED_SYSCTLS: tuple[str, ...] = ("net.netfilter", "net.ipv4.ip_forward")


class RulesError(KernelError):
    """Loading rules or setting sysctls failed: a tool or the kernel refused the spec's rules
    or sysctls, which is what needs fixing. str() is one line: the backend command, the host
    and the kernel's (or tool's) message (`message`; the command's exit status and full stderr
    are kept as in every `KernelError`)."""

    def __init__(self, what: str, command: Iterable[str], host: str, message: str,
                 returncode: int | None = None, stderr: str = "") -> None:
        self.what = what
        self.command = tuple(command)
        self.message = message
        super().__init__(f"failed: {message}", argv=self.command, host=host,
                         returncode=returncode, stderr=stderr)

    @classmethod
    def of(cls, e: KernelError) -> Self:
        message = tool_message(e.stderr) if e.returncode is not None and e.stderr else e.reason
        return cls("running", e.argv, e.host, message, e.returncode, e.stderr)

    @classmethod
    def refused(cls, what: str, command: Iterable[str], e: CommandError) -> RulesError:
        """`command` failed in a host: the tool's own message (or why it never finished)."""
        message = tool_message(e.stderr) if e.returncode is not None else str(e)
        return cls(what, command, e.host, message, e.returncode, e.stderr)

    def __str__(self) -> str:
        return f"{self.what} on host {self.host}: `{' '.join(self.command)}` failed: {self.message}"


@dataclass(frozen=True)
class LoadedRuleset:
    """The record of one host's ruleset: what was given, what was fed, what the kernel holds."""

    host: str
    backend: BackendName
    given: str                 # the spec's text (iptables-restore, or nft for the nft backend)
    fed: str                   # the exact text fed on stdin ("" when there were no rules)
    translation: str | None    # iptables-restore-translate's output, when the runner translated
    readback: str              # the save/list command's output, without its date comments
    command: tuple[str, ...]   # the loading command


def tool_message(stderr: bytes | str) -> str:
    """A tool's stderr as one line: drop usage hints, join the rest with '; '."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
    lines = [" ".join(ln.split()) for ln in text.splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("Try `")]
    return "; ".join(kept) or "(no message)"


def declare_builtin_chains(rules_text: str) -> str:
    """The iptables-restore text with every built-in chain of each table declared.

    iptables-restore creates a table's built-in chains by itself, but
    iptables-restore-translate emits `add chain` only for chains the text declares (`:NAME
    POLICY [p:b]`). Declaring them (policy ACCEPT) makes the nft translation hold the same
    base chains as iptables-nft would."""
    out: list[str] = []
    table: str | None = None
    declared: set[str] = set()
    pending: list[str] = []

    def flush() -> None:
        if table is not None:
            out.extend(f":{c} ACCEPT [0:0]" for c in chain_names(table)
                       if c not in declared)
        out.extend(pending)

    for line in rules_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("*"):
            table, declared, pending = stripped[1:].strip(), set(), []
            out.append(line)
        elif table is not None and stripped.startswith(":"):
            declared.add(stripped[1:].split()[0] if stripped[1:].split() else "")
            out.append(line)
        elif table is not None and stripped == "COMMIT":
            flush()
            out.append(line)
            table, pending = None, []
        elif table is not None:
            pending.append(line)
        else:
            out.append(line)
    if table is not None:  # no COMMIT: let the tool complain about it
        flush()
    return "\n".join(out) + "\n"


def translate(host: HostHandle, rules_text: str) -> str:
    """iptables-restore text -> nft text, by iptables-restore-translate inside `host`."""
    try:
        proc = host.run(TRANSLATE, input=declare_builtin_chains(rules_text).encode())
    except CommandError as e:
        raise RulesError.refused("translating rules for nft", TRANSLATE, e) from None
    return proc.stdout.decode()


def load_rules(host: HostHandle, backend: BackendName, rules_text: str,
               nft_text: str | None = None) -> LoadedRuleset:
    """Load the ruleset atomically into `host` and read it back.

    `rules_text` is iptables-restore text ("" = no rules: nothing is loaded, and the
    namespace tracks nothing). For the nft backend `nft_text` is used when given, else
    `rules_text` is translated."""
    if backend not in BACKEND:
        raise RulesError("loading rules", (backend,), host.name, f"unknown backend {backend!r}")
    command = BACKEND[backend].restore
    translation: str | None = None
    given = rules_text
    if BACKEND[backend].native_nft:
        if nft_text is not None:
            given = fed = nft_text
        else:
            fed = translation = translate(host, rules_text) if rules_text.strip() else ""
    else:
        fed = rules_text
    return _feed(host, backend, command, fed, "loading", given, translation)


_DATE_COMMENT = re.compile(r"^# (Generated by|Completed on|Translated by) ")


def read_rules(host: HostHandle, backend: BackendName) -> str:
    """The ruleset as the kernel holds it, without the save tools' date comments."""
    try:
        proc = host.run(BACKEND[backend].save)
    except CommandError as e:
        raise RulesError.refused(f"reading {backend} rules", BACKEND[backend].save, e) from None
    lines = proc.stdout.decode().splitlines()
    return "".join(ln + "\n" for ln in lines if not _DATE_COMMENT.match(ln))


def set_sysctls(host: HostHandle, mapping: Mapping[str, str]) -> dict[str, str]:
    """`sysctl -w name=value` for each entry inside `host`; returns the values read back.

    procps' sysctl exits 0 even when the kernel refuses a write (EINVAL), so its stderr and
    the value read back are checked too."""
    for name, value in mapping.items():
        argv = ("sysctl", "-w", f"{name}={value}")
        try:
            proc = host.run(argv)
        except CommandError as e:
            raise RulesError.refused("setting a sysctl", argv, e) from None
        if proc.stderr.strip():
            raise RulesError("setting a sysctl", argv, host.name, tool_message(proc.stderr))
    values = read_sysctls(host, mapping.keys())
    for name, value in mapping.items():
        if values.get(name) != " ".join(str(value).split()):
            raise RulesError("setting a sysctl", ("sysctl", "-w", f"{name}={value}"), host.name,
                             f"the kernel kept {name} = {values.get(name)!r}")
    return values


def read_sysctls(host: HostHandle, names: Iterable[str]) -> dict[str, str]:
    """Values of `names` (a name may be a directory such as `net.netfilter`: all its entries).
    Whitespace inside values (tcp_rmem's tabs) is normalised to single spaces."""
    names = tuple(names)
    if not names:
        return {}
    argv = ("sysctl", *names)
    try:
        proc = host.run(argv)
    except CommandError as e:
        raise RulesError.refused("reading sysctls", argv, e) from None
    values: dict[str, str] = {}
    for line in proc.stdout.decode().splitlines():
        key, sep, value = line.partition(" = ")
        if sep:
            values[key.strip()] = " ".join(value.split())
    return values


def record_sysctls(host: HostHandle, extra: Iterable[str] = ()) -> dict[str, str]:
    """Every net.netfilter.* value, net.ipv4.ip_forward, and `extra`, for a run's record."""
    return read_sysctls(host, dict.fromkeys([*RECORDED_SYSCTLS, *extra]))


def clear_rules(host: HostHandle, backend: BackendName) -> None:
    """Remove every rule, chain and table this backend holds in `host` (between test cases
    that share a topology). Note: a namespace stops tracking once no rule needs conntrack."""
    if backend == "nft" or backend == "iptables":
        argv: tuple[str, ...] = ("nft", "flush", "ruleset")
        try:
            host.run(argv)
        except CommandError as e:
            raise RulesError.refused("clearing rules", argv, e) from None
        return
    # Restoring a table without --noflush empties it and deletes its own chains. Only the
    # tables that exist: naming a table to iptables-legacy would create it (and its hooks).
    tables = [ln[1:].strip() for ln in read_rules(host, backend).splitlines()
              if ln.startswith("*")]
    text = "".join(
        f"*{t}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chain_names(t)) + "COMMIT\n"
        for t in tables)
    if text:
        command = BACKEND[backend].restore
        try:
            host.run(command, input=text.encode())
        except CommandError as e:
            raise RulesError.refused("clearing rules", command, e) from None


def replace_rules(host: HostHandle, backend: BackendName, rules_text: str,
                  nft_text: str | None = None) -> LoadedRuleset:
    """Replace `host`'s whole ruleset mid-run, in one load, and read it back.

    nft: `flush ruleset` and the new text in one `nft -f -` transaction (the flush line is the
    loader's, not the ruleset's: `fed` records the text without it). iptables and
    iptables-legacy: the new text, plus every table the host holds now and the text does not
    name, emptied (built-in chains only): a table the text leaves out is flushed, not kept.
    For iptables-nft the whole input is one transaction; iptables-legacy replaces table by
    table (each COMMIT is one table replace)."""
    if BACKEND[backend].native_nft:
        if nft_text is not None:
            given = fed = nft_text
            translation = None
        else:
            given = rules_text
            fed = translation = translate(host, rules_text) if rules_text.strip() else ""
        command: tuple[str, ...] = BACKEND[backend].restore
        try:
            host.run(command, input=("flush ruleset\n" + fed).encode())
        except CommandError as e:
            raise RulesError.refused(f"replacing {backend} rules", command, e) from None
        return LoadedRuleset(host.name, backend, given, fed if fed.strip() else "",
                             translation, read_rules(host, backend), command)
    named = {ln.strip()[1:].strip() for ln in rules_text.splitlines()
             if ln.strip().startswith("*")}
    held = [ln[1:].strip() for ln in read_rules(host, backend).splitlines()
            if ln.startswith("*")]
    emptied = "".join(
        f"*{t}\n" + "".join(f":{c} ACCEPT [0:0]\n" for c in chain_names(t)) + "COMMIT\n"
        for t in held if t not in named)
    text = rules_text if not rules_text.strip() or rules_text.endswith("\n") \
        else rules_text + "\n"
    fed = emptied + text if rules_text.strip() else emptied
    command = BACKEND[backend].restore
    return _feed(host, backend, command, fed, "replacing", rules_text, None)


def _feed(host: HostHandle, backend: BackendName, command: tuple[str, ...], fed: str, doing: str,
          given: str, translation: str | None) -> LoadedRuleset:
    """Feed `fed` to the backend's loader on stdin (nothing to feed: nothing run), then read
    the rules back as the kernel holds them."""
    if fed.strip():
        try:
            host.run(command, input=fed.encode())
        except CommandError as e:
            raise RulesError.refused(f"{doing} {backend} rules", command, e) from None
    return LoadedRuleset(host.name, backend, given, fed if fed.strip() else "", translation,
                         read_rules(host, backend), command)
