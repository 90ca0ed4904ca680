"""`natlab up`: a topology brought up by hand, with Mininet's CLI or natlab's line shell.

Kernel side (root): the topology comes up with a spec's rules and sysctls (or a rules file),
and whatever the user types runs inside a host's namespace as an argument list, never through a
shell. Leaving tears everything down.
"""

from __future__ import annotations

import shlex
import signal
import sys
from pathlib import Path
from typing import TextIO

from experiments.backends import BackendName
from experiments.ending import Signalled, signal_consumed
from experiments.errors import UserError
from experiments.kernel.rules import load_rules, set_sysctls
from experiments.library import resolve_spec_args
from experiments.preflight import kernel_preflight
from experiments.rulefiles import file_reading_problem
from experiments.spec import Spec, load_spec
from experiments.terminal import literal
from topologies.description import Topology
from topologies.hostexec import KernelError
from topologies.mininet_net import Network, running
from topologies.presets import PRESETS
from topologies.sweep import sweep_before_run

SHELL_HELP = """\
  HOST COMMAND [ARGS...]   run a command inside HOST (no shell: an argument list), e.g.
                           laptop ping -c 1 203.0.113.10
  conntrack                the gateway's table (conntrack -L)
  hosts                    the hosts, their addresses, and how to enter them from elsewhere
  help                     this text
  exit | quit | Ctrl-D     tear everything down and leave"""


def up(topology_arg: str, backend_arg: BackendName | None, rules_file: str | None,
       simple: bool) -> int:
    """Bring up a preset or a spec's topology (with its rules and sysctls) and explore it."""
    spec: Spec | None = None
    if topology_arg in PRESETS:
        topology = PRESETS[topology_arg]
    else:
        try:
            (path,) = resolve_spec_args([topology_arg])
        except (UserError, ValueError):
            known = ", ".join(sorted(PRESETS))
            raise UserError(f"{topology_arg!r} is neither a topology preset ({known}) nor a "
                            "spec") from None
        spec = load_spec(path, backend=backend_arg)
        topology = spec.topology
    backend: BackendName = backend_arg or (spec.backend if spec is not None else "iptables")
    rules, nft = (spec.rules, spec.nft) if spec is not None else ("", None)
    if rules_file is not None:
        try:
            text = Path(rules_file).read_text()
        except OSError as e:
            raise UserError(f"{rules_file}: cannot read the rules: {e.strerror or e}") from None
        problem = file_reading_problem(text, "nft" if backend == "nft" else "iptables")
        if problem:
            raise UserError(f"{rules_file}: --rules: {problem}")
        rules, nft = (text, None) if backend != "nft" else ("", text)
    kernel_preflight("up", [backend])
    swept = sweep_before_run(None)
    if swept is not None:
        print(f"natlab: {swept}", file=sys.stderr)
    try:
        return _up(topology, spec, backend, rules, nft, simple)
    except KernelError as e:        # a tool refused the rules, a program failed: one line
        raise UserError(str(e)) from None


def _up(topology: Topology, spec: Spec | None, backend: BackendName, rules: str,
        nft: str | None, simple: bool) -> int:
    with running(topology) as net:
        if spec is not None:
            for host, host_text in spec.host_rules.items():
                load_rules(net.host(host), backend, host_text)
        if rules.strip() or (nft or "").strip():
            load_rules(net.gateway, backend, rules, nft)
        if spec is not None and spec.sysctls:
            set_sysctls(net.gateway, spec.sysctls)
        if sys.stdin.isatty() and not simple:
            print(literal(f"topology {topology.name} is up: Mininet's CLI, hosts by their "
                          f"names ({', '.join(h.name for h in topology.hosts)}); e.g. "
                          f"`{topology.gateway} conntrack -L`. `exit` tears everything down.",
                          markup=False))
            net.mininet_cli()
            return 0
        return interactive(net, sys.stdin, sys.stdout)


def interactive(net: Network, stdin: TextIO, stdout: TextIO) -> int:
    """A small shell over a running topology: commands run in a host's namespace with the
    terminal attached. (Mininet's own CLI knows our hosts only by their run-scoped node
    names, so natlab speaks topology names instead.)"""

    def say(text: str) -> None:
        stdout.write(literal(text, markup=False, newlines=True) + "\n")
        stdout.flush()

    def hosts() -> None:
        for name, handle in net.hosts.items():
            addrs = " ".join(f"{i.name}={i.address}" for i in net.topology.host(name).interfaces)
            say(f"  {name:<10} {addrs:<48} enter: mnexec -a {handle.pid} bash")

    say(f"natlab: topology {net.topology.name} is up (run {net.run_id}); type help")
    hosts()
    interactive_tty = stdin.isatty()
    while True:
        if interactive_tty:
            stdout.write("natlab> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        try:
            words = shlex.split(line)
        except ValueError as e:
            say(f"natlab: {e}")
            continue
        if not words:
            continue
        if words[0] in ("exit", "quit"):
            break
        if words[0] == "help":
            say(SHELL_HELP)
            continue
        if words[0] == "hosts":
            hosts()
            continue
        if words[0] == "conntrack":
            words = [net.topology.gateway, "conntrack", "-L", *words[1:]]
        if words[0] not in net.hosts or len(words) < 2:
            say(f"natlab: {words[0]!r}: expected HOST COMMAND (hosts: "
                f"{', '.join(net.hosts)}); type help")
            continue
        try:
            stdout.flush()
            proc = net.host(words[0]).popen(words[1:], stdin=None, stdout=None, stderr=None)
            try:
                code = proc.wait()
            except Signalled as e:
                if e.signum != signal.SIGINT:   # SIGTERM, SIGHUP: natlab ends, teardown
                    raise                       # stops the command
                code = proc.wait()
                signal_consumed()               # the next Ctrl-C, at the prompt, ends natlab
            except KeyboardInterrupt:           # Ctrl-C reached the command too
                code = proc.wait()
        except Exception as e:  # noqa: BLE001 - one failed command must not end the session
            say(f"natlab: {e}")
            continue
        if code:
            say(f"natlab: exit status {code}")
    say("natlab: tearing down")
    return 0
