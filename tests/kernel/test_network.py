"""The Mininet adapter on the real kernel: what comes up, how commands run, what is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from ipaddress import IPv4Interface
from typing import Any

import pytest

from topologies.description import Topology
from topologies.hostexec import CommandError, HostHandle
from topologies.ifindex import interface_indexes
from topologies.mininet_net import (
    HOST_SYSCTLS,
    TCP_RMEM,
    TCP_WMEM,
    Network,
    interface_mac,
    running,
)
from topologies.names import (
    STATE_DIR,
    is_run_id,
    new_run_id,
    new_state,
    read_state,
    remove_state,
    state_run_ids,
    write_state,
)
from topologies.presets import preset
from topologies.sweep import find_leftovers, root_links, scan_processes

pytestmark = pytest.mark.kernel


def ip_json(handle: HostHandle, *args: str) -> list[dict[str, Any]]:
    return json.loads(handle.run(["ip", "-j", *args]).stdout)  # type: ignore[no-any-return]


def check_layout(net: Network) -> None:
    """Each host has exactly the described interfaces (plus lo), addresses, MACs and routes."""
    for host in net.topology.hosts:
        handle = net.host(host.name)
        links = {str(link["ifname"]): link for link in ip_json(handle, "address", "show")}
        assert set(links) == {i.name for i in host.interfaces} | {"lo"}, host.name
        for intf in host.interfaces:
            link = links[intf.name]
            assert link["operstate"] == "UP"
            assert link["address"] == interface_mac(intf.ip)
            assert link["ifindex"] == net.ifindex(host.name, intf.name)
            assert link["ifindex"] == interface_indexes(net.topology)[(host.name, intf.name)]
            inet = [a for a in link["addr_info"] if a["family"] == "inet"]
            assert [IPv4Interface(f"{a['local']}/{a['prefixlen']}") for a in inet] == [intf.address]
            assert not [a for a in link["addr_info"] if a["family"] == "inet6"]
        routes = ip_json(handle, "route", "show")
        gateways = {str(r["dst"]): r.get("gateway") for r in routes}
        for r in host.routes:
            dest = "default" if r.dest.prefixlen == 0 else str(r.dest)
            assert gateways[dest] == str(r.via), (host.name, routes)


def ping(net: Network, src: str, dst: str) -> None:
    proc = net.host(src).run(["ping", "-c1", "-W1", dst], check=False, timeout=5)
    assert proc.returncode == 0, f"{src} -> {dst}: {proc.stdout.decode()} {proc.stderr.decode()}"


# --- home ------------------------------------------------------------------------------------


def test_home_layout(home_net: Network) -> None:
    assert is_run_id(home_net.run_id)
    check_layout(home_net)
    assert home_net.start_seconds is not None and home_net.start_seconds > 0


def test_home_ping_through_gateway(home_net: Network) -> None:
    ping(home_net, "laptop", "203.0.113.10")
    ping(home_net, "desktop", "192.168.1.8")
    ping(home_net, "laptop", "192.168.1.9")


def test_home_sysctls(home_net: Network) -> None:
    for host in home_net.topology.hosts:
        handle = home_net.host(host.name)
        names = [*HOST_SYSCTLS, "net.ipv4.ip_forward"]
        out = handle.run(["sysctl", "-n", *names]).stdout.decode().splitlines()
        values = dict(zip(names, (" ".join(v.split()) for v in out), strict=True))
        assert home_net.sysctls[host.name] == values
        for name, value in HOST_SYSCTLS.items():
            if host.forwarding and "accept_redirects" in name:
                continue  # turning forwarding on changes it (recorded as read back)
            assert values[name] == value, (host.name, name)
        assert values["net.ipv4.tcp_rmem"] == TCP_RMEM
        assert values["net.ipv4.tcp_wmem"] == TCP_WMEM
        assert values["net.ipv6.conf.all.disable_ipv6"] == "1"
        assert values["net.ipv4.ip_forward"] == ("1" if host.forwarding else "0")
        assert home_net.sysctls[host.name]["net.ipv4.ip_forward"] == values["net.ipv4.ip_forward"]


def test_offloads_are_off(home_net: Network) -> None:
    wanted = (
        "rx-checksumming",
        "tx-checksumming",
        "tcp-segmentation-offload",
        "generic-segmentation-offload",
        "generic-receive-offload",
    )
    for host in home_net.topology.hosts:
        for intf in host.interfaces:
            out = home_net.host(host.name).run(["ethtool", "-k", intf.name]).stdout.decode()
            features = dict(
                line.split(":", 1) for line in out.splitlines()[1:] if not line.startswith("\t")
            )
            for feature in wanted:
                assert features[feature].split()[0] == "off", (host.name, intf.name, feature)


def test_namespaces_are_separate(home_net: Network) -> None:
    inodes = {os.readlink(f"/proc/{h.pid}/ns/net") for h in home_net.hosts.values()}
    assert len(inodes) == len(home_net.topology.hosts)
    assert os.readlink("/proc/self/ns/net") not in inodes
    assert not [name for name in root_links() if name.startswith(home_net.run_id)]


# --- commands in a host ----------------------------------------------------------------------


def test_run_returns_output(home_net: Network) -> None:
    proc = home_net.gateway.run(["cat"], input=b"hello")
    assert proc.stdout == b"hello" and proc.returncode == 0
    assert proc.args == ["cat"]


def test_failed_command_raises_one_line(home_net: Network) -> None:
    with pytest.raises(CommandError) as info:
        home_net.gateway.run(["ip", "link", "set", "dev", "nosuch0", "up"])
    err = info.value
    assert err.host == "gateway"
    assert err.argv == ("ip", "link", "set", "dev", "nosuch0", "up")
    assert err.returncode not in (0, None)
    assert "nosuch0" in err.stderr
    assert "\n" not in str(err) and "[gateway]" in str(err) and "nosuch0" in str(err)
    proc = home_net.gateway.run(["false"], check=False)
    assert proc.returncode == 1


def test_missing_binary_is_named(home_net: Network) -> None:
    with pytest.raises(CommandError, match="natlab-no-such-tool not found") as info:
        home_net.host("laptop").run(["natlab-no-such-tool", "--help"])
    assert info.value.returncode is None


def test_timeout_kills_and_raises(home_net: Network) -> None:
    with pytest.raises(CommandError, match=r"timed out after 0\.2 s"):
        home_net.host("desktop").run(["sleep", "5"], timeout=0.2)
    own = [p for p in scan_processes() if p.env_run == home_net.run_id and "sleep" in p.cmdline]
    assert not [p for p in own if p.cmdline == ("sleep", "5")]


def test_unknown_host_and_interface(home_net: Network) -> None:
    with pytest.raises(KeyError, match="router"):
        home_net.host("router")
    with pytest.raises(KeyError, match="eth7"):
        home_net.ifindex("laptop", "eth7")


# --- lan -------------------------------------------------------------------------------------


def test_lan_layout_and_reachability(lan_net: Network) -> None:
    check_layout(lan_net)
    for i in range(1, 5):
        ping(lan_net, f"client{i}", "203.0.113.10")
    ping(lan_net, "client1", "192.168.1.14")  # across the bridge, not via the gateway
    ports = json.loads(lan_net.bridge("lan").run(["bridge", "-j", "link", "show"]).stdout)
    assert {p["ifname"] for p in ports} == {"client1", "client2", "client3", "client4", "gateway"}
    assert {p["master"] for p in ports} == {"br0"}


# --- lifecycle -------------------------------------------------------------------------------


def marked(run_id: str) -> list[int]:
    return [p.pid for p in scan_processes() if run_id in (p.marker_run, p.env_run)]


def test_teardown_leaves_nothing() -> None:
    links_before = set(root_links())
    with running(preset("home")) as net:
        run_id = net.run_id
        state = read_state(run_id)
        assert state is not None and state.owner_alive()
        assert {n.host for n in state.nodes} == {"laptop", "gateway", "desktop"}
        shells = [n.pid for n in state.nodes]
        child = net.gateway.popen(["sleep", "30"])
        assert child.pid in marked(run_id) and all(pid in marked(run_id) for pid in shells)
        # a process that joined a namespace without our environment marker
        stray = subprocess.Popen(["mnexec", "-a", str(net.gateway.pid), "sleep", "31"], env={})
    assert child.poll() is not None
    assert stray.wait(5) == -signal.SIGKILL
    assert marked(run_id) == []
    assert all(not os.path.exists(f"/proc/{pid}") for pid in shells if pid is not None)
    assert find_leftovers(run_id).empty
    assert read_state(run_id) is None
    new_links = set(root_links()) - links_before
    assert not [n for n in new_links if n.startswith(run_id)]
    assert net.stop_seconds is not None and net.stop_seconds >= 0


def test_teardown_on_exception_and_interrupt() -> None:
    for exc in (ValueError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), running(preset("home")) as net:
            run_id = net.run_id
            raise exc
        assert find_leftovers(run_id).empty


def test_failed_setup_is_cleaned_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A command failing half-way through bring-up still leaves nothing behind."""
    import topologies.mininet_net as mn

    seen: list[str] = []

    def broken(self: object, host_name: str) -> None:
        seen.append(self.run_id)  # type: ignore[attr-defined]
        raise CommandError(["ip", "-batch", "-"], host_name, 2, "RTNETLINK answers: nope")

    monkeypatch.setattr(mn._Builder, "_configure", broken)
    with pytest.raises(CommandError, match="nope"), running(preset("lan")):
        pass
    assert seen and find_leftovers(seen[0]).empty


def test_two_networks_of_one_preset_at_once() -> None:
    with running(preset("home")) as a, running(preset("home")) as b:
        assert a.run_id != b.run_id
        ping(a, "laptop", "203.0.113.10")
        ping(b, "laptop", "203.0.113.10")
        assert a.gateway.pid != b.gateway.pid
    assert find_leftovers(a.run_id).empty and find_leftovers(b.run_id).empty


def test_bad_run_id_is_refused() -> None:
    with pytest.raises(ValueError, match="not a natlab run id"), running(preset("home"), "x/y"):
        pass


def test_run_id_in_use_is_refused() -> None:
    state = new_state("nlzz00", "home")
    write_state(state)
    try:
        with pytest.raises(RuntimeError, match="already in use"), running(preset("home"), "nlzz00"):
            pass
    finally:
        remove_state("nlzz00")
    assert not (STATE_DIR / "nlzz00.json").exists()


def own_state_files() -> set[str]:
    """State files of runs owned by this test process (other workers own theirs)."""
    out = set()
    for run_id in state_run_ids():
        state = read_state(run_id)
        if state is not None and state.owner_pid == os.getpid():
            out.add(run_id)
    return out


def test_invalid_topology_creates_nothing(home_net: Network) -> None:
    t = preset("home")
    bad = Topology(t.name, t.hosts, t.segments[:1], t.gateway)  # desktop/wan0 unwired
    before = own_state_files()
    assert home_net.run_id in before
    with pytest.raises(ValueError, match="not on any link"), running(bad):
        pass
    assert own_state_files() == before


def test_popen_children_are_stopped(home_net: Network, wait_until: Callable[..., None]) -> None:
    """popen'd processes carry the run marker and are visible to the sweeper's scan."""
    proc = home_net.host("desktop").popen(["sleep", "20"], stdout=subprocess.DEVNULL)
    wait_until(lambda: proc.pid in marked(home_net.run_id), what="the marked child")
    info = next(p for p in scan_processes() if p.pid == proc.pid)
    assert info.netns == os.readlink(f"/proc/{home_net.host('desktop').pid}/ns/net")
    home_net.host("desktop").stop_children()
    assert proc.returncode is not None


def test_ctrl_c_during_teardown_is_held_until_done(monkeypatch: pytest.MonkeyPatch) -> None:
    import topologies.mininet_net as mn

    original = mn._Builder.teardown
    ids: list[str] = []

    def interrupted_teardown(self: mn._Builder) -> None:
        ids.append(self.run_id)
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C right as teardown starts
        original(self)

    monkeypatch.setattr(mn._Builder, "teardown", interrupted_teardown)
    with pytest.raises(KeyboardInterrupt), running(preset("home")):
        pass
    assert ids and find_leftovers(ids[0]).empty


@pytest.mark.parametrize("delay", [0.005, 0.02, 0.04, 0.06, 0.08])
def test_ctrl_c_at_any_point_of_bring_up_leaves_nothing(delay: float) -> None:
    run_id = new_run_id()
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with running(preset("home"), run_id):
            time.sleep(2)
    except KeyboardInterrupt:
        pass
    finally:
        timer.cancel()
    assert find_leftovers(run_id).empty, find_leftovers(run_id).describe()
