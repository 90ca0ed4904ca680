"""Turn a topology description into running network namespaces (needs root).

This is the only module that imports Mininet. Mininet gives us a namespace per host (a shell
started with `mnexec -cdn`, whose command line carries the marker `mininet:<node>`) and its
Link/Intf bookkeeping; everything else is done with argument lists whose exit codes are
checked (Mininet's `Node.cmd` hides them and is not used at all):

- one Mininet host node per topology host, named `{run_id}h{i}`; one more node per bridged
  segment, `{run_id}b{j}`, holding a Linux bridge `br0` (never a bridge in the root namespace,
  no Open vSwitch, no NAT node, nothing attached to real interfaces);
- veth pairs created directly inside the two namespaces with the description's interface names
  (no rename needed) and MAC addresses derived from the interface's IPv4 address, so captures
  are the same on every run: `02:00:<a>:<b>:<c>:<d>` on a host, `06:00:...` on a bridge port;
- in every namespace, before any interface exists: `HOST_SYSCTLS` (fixed TCP buffer sizes,
  IPv6 off so captures hold only our IPv4 traffic, rp_filter off) and `ip_forward` as described,
  because a new namespace otherwise copies some of these from the machine's root namespace;
- addresses, links and routes through one `ip -batch -` per host, offloads off on every veth
  (`ethtool -K`, so captured checksums are real), then polling until every interface is up;
- Mininet's `Mininet.init()` is skipped: it raises *root-namespace* sysctls and limits.

Teardown always runs (ExitStack, registered before anything is created): stop our processes,
stop Mininet, kill anything else still inside our namespaces, verify that nothing carrying the
run id is left, and only then remove the run's state file (see `topologies.names`).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from mininet.cli import CLI
from mininet.link import Link
from mininet.net import Mininet

from topologies.description import Segment, Topology
from topologies.hostexec import HostHandle
from topologies.ifindex import BRIDGE, bridge_label, interface_indexes
from topologies.inline import check_topology
from topologies.names import (
    STATE_DIR,
    NodeRecord,
    RunState,
    bridge_node_name,
    host_node_name,
    is_run_id,
    new_run_id,
    new_state,
    read_state,
    remove_state,
    write_state,
)
from topologies.sweep import (
    delete_links,
    find_leftovers,
    kill_processes,
    processes_of,
    record_ended,
    scan_processes,
)

log = logging.getLogger(__name__)

TCP_RMEM = "4096 131072 6291456"
TCP_WMEM = "4096 16384 4194304"
# Set in every namespace (hosts and bridges) before its interfaces are created, so that new
# interfaces inherit the `default` values too. A new namespace copies IPv4 settings from the
# machine's root namespace (net.core.devconf_inherit_init_net = 0), so hardened machines
# (rp_filter, redirects off) would otherwise behave differently: pin the kernel's defaults.
HOST_SYSCTLS: Mapping[str, str] = {
    "net.ipv4.tcp_rmem": TCP_RMEM,
    "net.ipv4.tcp_wmem": TCP_WMEM,
    "net.ipv6.conf.all.disable_ipv6": "1",
    "net.ipv6.conf.default.disable_ipv6": "1",
    "net.ipv4.conf.all.rp_filter": "0",
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv4.conf.all.send_redirects": "1",
    "net.ipv4.conf.default.send_redirects": "1",
    "net.ipv4.conf.all.accept_redirects": "1",
    "net.ipv4.conf.default.accept_redirects": "1",
}
OFFLOADS_OFF = ("tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off")
UP_TIMEOUT = 5.0


class TeardownError(RuntimeError):
    """Teardown finished but something carrying the run id is still there (the state file is
    kept so `natlab sweep` can find it)."""


def interface_mac(address: IPv4Address, bridge_port: bool = False) -> str:
    """The MAC address natlab gives an interface with this IPv4 address (locally administered,
    unicast). A bridge's port towards that interface gets the `06:` variant."""
    first = 0x06 if bridge_port else 0x02
    return ":".join(f"{b:02x}" for b in (first, 0, *address.packed))


class _CheckedLink(Link):  # type: ignore[misc]
    """A Mininet veth link created with a checked `ip link add` inside node1's namespace (the
    peer goes straight into node2's), instead of Mininet's unchecked shell command.

    `ifindexes` maps (node name, interface name) to the index to create it with; a run uses a
    subclass holding its own map (Mininet calls makeIntfPair as a classmethod)."""

    ifindexes: Mapping[tuple[str, str], int] = {}

    @classmethod
    def makeIntfPair(  # noqa: N802 (Mininet's name)
        cls,
        intfname1: str,
        intfname2: str,
        addr1: str | None = None,
        addr2: str | None = None,
        node1: Any = None,
        node2: Any = None,
        deleteIntfs: bool = True,  # noqa: N803
    ) -> None:
        assert node1 is not None and node2 is not None, "natlab links always join two nodes"
        argv = ["ip", "link", "add", "name", intfname1]
        argv += cls._options(node1.name, intfname1, addr1)
        argv += ["type", "veth", "peer", "name", intfname2]
        argv += cls._options(node2.name, intfname2, addr2)
        argv += ["netns", str(node2.pid)]
        HostHandle(node1.name, node1.pid).run(argv)

    @classmethod
    def _options(cls, node: str, ifname: str, mac: str | None) -> list[str]:
        out = []
        if (node, ifname) in cls.ifindexes:
            out += ["index", str(cls.ifindexes[(node, ifname)])]
        if mac:
            out += ["address", mac]
        return out

    def stop(self) -> None:
        """Nothing to delete one by one: both ends live only in our namespaces and vanish with
        them; the teardown verifies that."""


class Network:
    """A running topology: one HostHandle per host, plus what was configured."""

    def __init__(self, topology: Topology, run_id: str) -> None:
        self.topology = topology
        self.run_id = run_id
        self._hosts: dict[str, HostHandle] = {}
        self._bridges: dict[str, HostHandle] = {}
        self._ifindex: dict[tuple[str, str], int] = {}
        self.node_names: dict[str, str] = {}
        self.sysctls: dict[str, dict[str, str]] = {}
        self._mininet: Any = None
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None

    def __repr__(self) -> str:
        return f"Network({self.topology.name!r}, run_id={self.run_id!r})"

    def host(self, name: str) -> HostHandle:
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(f"topology {self.topology.name} has no host {name!r}") from None

    @property
    def hosts(self) -> Mapping[str, HostHandle]:
        return dict(self._hosts)

    @property
    def gateway(self) -> HostHandle:
        return self.host(self.topology.gateway)

    def mininet_cli(self) -> None:
        """Mininet's own interactive CLI on this network. Hosts answer to their topology
        names (`gateway conntrack -L`, `laptop ping -c1 203.0.113.10`) as well as to their
        run-scoped node names."""
        net = self._mininet
        if net is None:
            raise RuntimeError(f"{self} is not running")
        for name, node_name in self.node_names.items():
            net.nameToNode.setdefault(name, net.nameToNode[node_name])
        CLI(net)

    def bridge(self, segment: str) -> HostHandle:
        """The namespace holding the Linux bridge of a bridged segment."""
        try:
            return self._bridges[segment]
        except KeyError:
            raise KeyError(f"segment {segment!r} is not a bridged segment") from None

    def ifindex(self, host: str, ifname: str) -> int:
        """The interface's index inside its host's namespace (as tcpdump's SLL2 header and
        `ip link` show it)."""
        try:
            return self._ifindex[(host, ifname)]
        except KeyError:
            raise KeyError(f"no interface {ifname!r} on host {host!r}") from None

    def mac(self, host: str, ifname: str) -> str:
        return interface_mac(self.topology.host(host).interface(ifname).ip)


def plan_ifindexes(topology: Topology, run_id: str) -> dict[tuple[str, str], int]:
    """`interface_indexes(topology)` keyed by (Mininet node name, interface name)."""
    nodes = {h.name: host_node_name(run_id, i) for i, h in enumerate(topology.hosts)}
    bridged = [s for s in topology.segments if s.bridged]
    nodes |= {bridge_label(s.name): bridge_node_name(run_id, j) for j, s in enumerate(bridged)}
    return {
        (nodes[owner], name): index for (owner, name), index in interface_indexes(topology).items()
    }


@contextmanager
def running(
    topology: Topology, run_id: str | None = None, *, state_dir: Path = STATE_DIR
) -> Iterator[Network]:
    """Bring `topology` up in fresh namespaces, yield it, and always tear it down."""
    check_topology(topology)
    if os.geteuid() != 0:
        raise PermissionError("natlab needs root to create network namespaces")
    run_id = run_id or new_run_id()
    if not is_run_id(run_id):
        raise ValueError(f"not a natlab run id: {run_id!r} (`nl` + 4 of [0-9a-z])")
    if read_state(run_id, state_dir) is not None:
        raise RuntimeError(f"run id {run_id} is already in use (state file in {state_dir})")
    builder = _Builder(topology, run_id, state_dir)
    with ExitStack() as stack:
        stack.push(builder.exit)
        write_state(builder.state, state_dir)  # before anything exists
        started = time.monotonic()
        builder.build()
        builder.network.start_seconds = time.monotonic() - started
        log.debug("%s up in %.3f s", builder.network, builder.network.start_seconds)
        yield builder.network


_HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _SigintDeferred:
    """Hold SIGINT, SIGTERM and SIGHUP back for the duration (main thread only; Python runs
    signal handlers only there), then deliver the first one held the way the previous handler
    would have, if asked to."""

    def __init__(self) -> None:
        self.held: int | None = None
        self.previous: dict[int, Any] = {}
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _SigintDeferred:
        if self.active:
            for signum in _HELD_SIGNALS:
                self.previous[signum] = signal.signal(signum, self._hold)
        return self

    def _hold(self, signum: int, frame: object) -> None:
        if self.held is None:
            self.held = signum

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self.previous.items():
            signal.signal(signum, previous)

    def deliver(self) -> None:
        """Act on a held signal as the restored handler would (SIGINT's default:
        KeyboardInterrupt)."""
        if self.held is None:
            return
        previous = self.previous.get(self.held)
        if callable(previous):
            previous(self.held, None)
        elif previous == signal.SIG_DFL:
            os.kill(os.getpid(), self.held)


class _Builder:
    def __init__(self, topology: Topology, run_id: str, state_dir: Path) -> None:
        self.topology = topology
        self.run_id = run_id
        self.state_dir = state_dir
        self.state: RunState = new_state(run_id, topology.name)
        self.network = Network(topology, run_id)
        self.net: Any = None
        self.nodes: dict[str, Any] = {}  # node name -> Mininet node
        self.handles: dict[str, HostHandle] = {}  # node name -> handle
        self.ifindexes = plan_ifindexes(topology, run_id)

    # --- bring up ----------------------------------------------------------------------------

    def build(self) -> None:
        Mininet.inited = True  # skip Mininet.init(): it changes root-namespace sysctls
        link_cls = type("_RunLink", (_CheckedLink,), {"ifindexes": self.ifindexes})
        self.net = Mininet(topo=None, controller=None, build=False, link=link_cls)
        self.network._mininet = self.net
        for i, host in enumerate(self.topology.hosts):
            node_name = host_node_name(self.run_id, i)
            self.network._hosts[host.name] = self._add_node(node_name, host.name)
            self.network.node_names[host.name] = node_name
        bridged = [s for s in self.topology.segments if s.bridged]
        for j, seg in enumerate(bridged):
            handle = self._add_node(bridge_node_name(self.run_id, j), bridge_label(seg.name))
            self.network._bridges[seg.name] = handle
        for host in self.topology.hosts:
            self._sysctls(self.network._hosts[host.name], forwarding=host.forwarding)
        for handle in self.network._bridges.values():
            self._sysctls(handle, forwarding=False)
        for seg in self.topology.segments:
            if seg.bridged:
                self._bridged_segment(seg)
            else:
                self._veth_segment(seg)
        for host in self.topology.hosts:
            self._configure(host.name)
        self._offloads_off()
        self._wait_up()

    def _add_node(self, node_name: str, label: str) -> HostHandle:
        node = self.net.addHost(node_name, ip=None)
        self.nodes[node_name] = node
        netns = os.readlink(f"/proc/{node.pid}/ns/net")
        self.state = self.state.with_node(NodeRecord(node_name, label, node.pid, netns))
        write_state(self.state, self.state_dir)
        # The handle's name is what errors show: the topology's host name, or the bridge label.
        handle = HostHandle(label, node.pid, self.run_id)
        self.handles[node_name] = handle
        return handle

    def _sysctls(self, handle: HostHandle, forwarding: bool) -> None:
        """Set HOST_SYSCTLS, then ip_forward (last, as an administrator would: turning
        forwarding on makes the kernel set accept_redirects to 0), and record what is in
        effect as read back."""
        values = dict(HOST_SYSCTLS)
        values["net.ipv4.ip_forward"] = "1" if forwarding else "0"
        handle.run(["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in values.items())])
        out = handle.run(["sysctl", "-n", *values]).stdout.decode().splitlines()
        if len(out) != len(values):
            raise RuntimeError(
                f"[{handle.name}] `sysctl -n` gave {len(out)} values for {len(values)}"
            )
        self.network.sysctls[handle.name] = {
            k: " ".join(v.split()) for k, v in zip(values, out, strict=True)
        }

    def _node_of(self, host: str) -> Any:
        return self.nodes[self.network.node_names[host]]

    def _veth_segment(self, seg: Segment) -> None:
        a, b = seg.endpoints
        ip_a = self.topology.host(a.host).interface(a.interface).ip
        ip_b = self.topology.host(b.host).interface(b.interface).ip
        self.net.addLink(
            self._node_of(a.host),
            self._node_of(b.host),
            intfName1=a.interface,
            intfName2=b.interface,
            addr1=interface_mac(ip_a),
            addr2=interface_mac(ip_b),
            params1={"up": None},  # no Mininet ifconfig: we configure with checked commands
            params2={"up": None},
        )

    def _bridged_segment(self, seg: Segment) -> None:
        bridge = self.network._bridges[seg.name]
        bridge_node = self.nodes[self._node_name_of(bridge)]
        bridge.run(
            [
                "ip",
                "link",
                "add",
                "name",
                BRIDGE,
                "index",
                str(self.ifindexes[(self._node_name_of(bridge), BRIDGE)]),
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
                # No multicast snooping: with it the bridge joins 224.0.0.106 and sends an
                # IGMP report onto the segment at a random moment (a stray packet in captures).
                "mcast_snooping",
                "0",
            ]  # fmt: skip
        )
        commands = []
        for end in seg.endpoints:
            ip = self.topology.host(end.host).interface(end.interface).ip
            # The bridge's port is named after the host (host names are unique, <= 8 chars).
            self.net.addLink(
                self._node_of(end.host),
                bridge_node,
                intfName1=end.interface,
                intfName2=end.host,
                addr1=interface_mac(ip),
                addr2=interface_mac(ip, bridge_port=True),
                params1={"up": None},
                params2={"up": None},
            )
            commands += [f"link set dev {end.host} master {BRIDGE}", f"link set dev {end.host} up"]
        commands.append(f"link set dev {BRIDGE} up")
        self._batch(bridge, commands)

    def _node_name_of(self, handle: HostHandle) -> str:
        return next(n for n, h in self.handles.items() if h is handle)

    def _configure(self, host_name: str) -> None:
        host = self.topology.host(host_name)
        commands = ["link set dev lo up"]
        for intf in host.interfaces:
            commands.append(f"address add {intf.address} brd + dev {intf.name}")
            commands.append(f"link set dev {intf.name} up")
        for r in host.routes:
            cmd = f"route add {r.dest}"
            if r.via is not None:
                cmd += f" via {r.via}"
            if r.dev is not None:
                cmd += f" dev {r.dev}"
            commands.append(cmd)
        self._batch(self.network._hosts[host_name], commands)

    @staticmethod
    def _batch(handle: HostHandle, commands: list[str]) -> None:
        """Feed `ip` its commands on stdin; it stops at the first failure and says which."""
        handle.run(["ip", "-batch", "-"], input=("\n".join(commands) + "\n").encode())

    def _offloads_off(self) -> None:
        for host in self.topology.hosts:
            handle = self.network._hosts[host.name]
            for intf in host.interfaces:
                handle.run(["ethtool", "-K", intf.name, *OFFLOADS_OFF])
        for seg in self.topology.segments:
            if seg.bridged:
                bridge = self.network._bridges[seg.name]
                for end in seg.endpoints:
                    bridge.run(["ethtool", "-K", end.host, *OFFLOADS_OFF])

    def _wait_up(self) -> None:
        """Poll until every described interface is up with exactly its described address, and
        every bridge port forwards; record interface indexes."""
        deadline = time.monotonic() + UP_TIMEOUT
        pending = {h.name for h in self.topology.hosts}
        while True:
            for name in sorted(pending):
                if self._host_ready(name):
                    pending.discard(name)
            bridges_ready = all(
                self._bridge_ready(self.network._bridges[s.name], s)
                for s in self.topology.segments
                if s.bridged
            )
            if not pending and bridges_ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"run {self.run_id}: interfaces not up after {UP_TIMEOUT} s "
                    f"(hosts {sorted(pending)}, bridges ready: {bridges_ready})"
                )
            time.sleep(0.01)

    def _host_ready(self, host_name: str) -> bool:
        host = self.topology.host(host_name)
        handle = self.network._hosts[host_name]
        links = json.loads(handle.run(["ip", "-j", "address", "show"]).stdout)
        by_name = {link["ifname"]: link for link in links}
        expected = {i.name for i in host.interfaces} | {"lo"}
        if set(by_name) != expected:
            raise RuntimeError(
                f"run {self.run_id}: host {host_name} has interfaces {sorted(by_name)}, "
                f"expected {sorted(expected)}"
            )
        for intf in host.interfaces:
            link = by_name[intf.name]
            addrs = {
                f"{a['local']}/{a['prefixlen']}"
                for a in link.get("addr_info", [])
                if a.get("family") == "inet"
            }
            if addrs != {str(intf.address)}:
                raise RuntimeError(
                    f"run {self.run_id}: {host_name}:{intf.name} has addresses {sorted(addrs)}, "
                    f"expected {intf.address}"
                )
            if link.get("operstate") != "UP":
                return False
        node = self.network.node_names[host_name]
        for name, link in by_name.items():
            index = int(link["ifindex"])
            if name != "lo" and index != self.ifindexes[(node, name)]:
                raise RuntimeError(
                    f"run {self.run_id}: {host_name}:{name} has index {index}, "
                    f"expected {self.ifindexes[(node, name)]}"
                )
            self.network._ifindex[(host_name, name)] = index
        return True

    @staticmethod
    def _bridge_ready(bridge: HostHandle, seg: Segment) -> bool:
        ports = json.loads(bridge.run(["bridge", "-j", "link", "show"]).stdout)
        states = {p["ifname"]: p.get("state") for p in ports}
        return all(states.get(end.host) == "forwarding" for end in seg.endpoints)

    # --- tear down ---------------------------------------------------------------------------

    def exit(self, exc_type: object, exc: BaseException | None, tb: object) -> bool:
        """ExitStack hook: tear down; a teardown failure while another error propagates is
        attached to that error as a note instead of hiding it. A Ctrl-C (or SIGTERM, SIGHUP)
        during teardown is held back until teardown is done (then raised, unless an error
        already propagates)."""
        with _SigintDeferred() as sigint:
            try:
                self.teardown()
            except TeardownError as e:
                if exc is None:
                    raise
                exc.add_note(f"also, teardown failed: {e}")
        if exc is None:
            sigint.deliver()
        return False

    def teardown(self) -> None:
        started = time.monotonic()
        problems: list[str] = []
        for handle in self.handles.values():
            try:
                handle.stop_children()
            except OSError as e:
                problems.append(f"stopping processes of {handle.name}: {e}")
        # Anything else inside our namespaces, found while the node shells still mark them.
        strays = [p for p in processes_of(self.run_id, scan_processes()) if p.marker_run is None]
        kill_processes(strays)
        if self.net is not None:
            try:
                self.net.stop()
            except Exception as e:  # keep going: the checks below decide
                problems.append(f"Mininet stop: {e}")
        left = find_leftovers(self.run_id, self.state_dir)
        if left.processes:
            kill_processes(left.processes)
        if left.links:
            problems += delete_links(self.run_id)[1]
        left = find_leftovers(self.run_id, self.state_dir)
        self.network.stop_seconds = time.monotonic() - started
        if left.processes or left.links or problems:
            raise TeardownError(
                "; ".join([*problems, left.describe()])
                + " (state file kept; `natlab sweep` can remove the rest)"
            )
        remove_state(self.run_id, self.state_dir)
        record_ended({self.run_id: 0}, "teardown", self.state_dir)
        log.debug("%s down in %.3f s", self.network, self.network.stop_seconds)
