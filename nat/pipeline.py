"""The gateway: a packet's walk through the netfilter hooks, callbacks in priority order.

Mirrors the IPv4 receive/forward/output paths (net/ipv4/ip_input.c ip_rcv, ip_forward.c
ip_forward, ip_output.c ip_output) and, at each hook, nf_hook_slow() (net/netfilter/core.c):
the callbacks registered on the hook, in the order of the ruleset's `HookTable`
(nat/hook_table.py, docs/hooks.md), until one does not accept. With the usual tables:

    PRE_ROUTING : nf_conntrack_in (-200) -> NAT DST (-100, nf_nat_ipv4_pre_routing)
                  -> routing decision (ip_route_input; redone after DNAT)
    FORWARD     : filter (0)                            [ip_forward decremented the TTL]
    LOCAL_IN    : filter (0) -> NAT SRC (100, nf_nat_ipv4_local_in) -> confirm (INT_MAX)
    LOCAL_OUT   : nf_conntrack_in (-200) -> NAT DST (-100, nf_nat_ipv4_local_fn; re-route if
                  the destination changed) -> filter (0)
    POST_ROUTING: NAT SRC (100, nf_nat_ipv4_out) -> confirm (INT_MAX, nf_confirm)

nft filter chains sit wherever their hook and priority put them (a filter chain at
prerouting, one at output -250 before conntrack). The raw, mangle and security tables and nft
route chains are not modelled: the rule parser refuses them, and the table refuses a chain
it cannot place. Conntrack helpers (the old NF_IP_PRI_CONNTRACK_HELPER 300 slot) are not
modelled either; recent kernels run them from inside the confirm hook anyway.

The NAT core hook (nf_nat_inet_fn in net/netfilter/nf_nat_core.c) runs the user's nat chains
only for a connection's first packet per manip type; when no rule binds, it makes the null
binding. Conntrack and NAT run only once the ruleset needs them (kernel-semantics 1.3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from nat.checksum import checksums_ok
from nat.choice import Choice
from nat.conn import Conn
from nat.conntrack import Table
from nat.core import nf_conntrack_confirm, nf_conntrack_in
from nat.entry import Entry
from nat.extract import icmp_error_inner
from nat.hook_table import HookTable, Kind, Registration, build_hook_table
from nat.hooks import Hook, Priority
from nat.journey import Journey, Step
from nat.manip import ManipError, icmp_reply_translation, manip_pkt
from nat.maniptype import ManipType
from nat.nat_setup import nf_nat_setup_info, null_binding
from nat.nat_targets import masquerade_range, redirect_range
from nat.netdev import Device, NetView
from nat.packet import IcmpHeader, Packet
from nat.profile import LINUX_LATEST, KernelProfile
from nat.proto_tcp import TcpConnState
from nat.reject import no_reset_reason, tcp_reset
from nat.rule_eval import RuleContext, evaluate
from nat.rules.ast import Dnat, Drop, Masquerade, Redirect, Reject, Rule, Ruleset, Snat
from nat.rules.ct_match import CtView
from nat.rules.modelled import check_modelled
from nat.status import CtInfo, Status, TcpState
from nat.sysctl import Sysctls
from nat.tuple import ICMP_ERROR_TYPES, Direction, Proto, Tuple, invert

ICMP_REDIRECT = 5
UNRESOLVED = "UNRESOLVED"   # verdict: left for a next hop no host owns (see _postrouting)

# Chooses among the outcomes the kernel may pick. The default takes the model's own pick;
# the differential replay passes one that adopts what the kernel did.
Chooser = Callable[[Choice[Tuple], ManipType], Tuple]


def default_chooser(choice: Choice[Tuple], manip: ManipType) -> Tuple:
    return choice.default


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the model knows about the gateway: devices and routes, rules, sysctls,
    and which kernel's behaviour to follow."""

    net: NetView
    ruleset: Ruleset
    sysctls: Sysctls = field(default_factory=Sysctls)
    profile: KernelProfile = LINUX_LATEST


@dataclass
class _Walk:
    """The mutable state of one packet's walk (skb and its attached ct, in the kernel)."""

    pkt: Packet
    now: float
    steps: list[Step]
    conn: Conn | None = None
    ctinfo: CtInfo = CtInfo.INVALID
    in_dev: Device | None = None
    out_dev: Device | None = None
    nexthop: IPv4Address | None = None
    passed: list[Registration] = field(default_factory=list)   # the callbacks called
    looped: bool = False        # back in on lo: the skb still carries its entry
    attached: bool = False      # the entry came with the packet (nf_ct_attach): no lookup
    answers: list[Journey] = field(default_factory=list)       # packets sent in answer

    def note(self, hook: Hook | None, prio: int | None, function: str, did: str) -> None:
        self.steps.append(Step(hook, prio, function, did))


class Gateway:
    """The modelled gateway namespace: its config and its conntrack table.

    `receive()` takes a packet arriving on one of the gateway's interfaces; `send_local()` a
    packet the gateway's own stack sends (to another host, or through lo to itself). Both
    return the packet's `Journey`. The table is the
    only mutable state; time is always passed in.
    """

    def __init__(self, config: GatewayConfig) -> None:
        """Raises ChainNotModelled (a RuleError) for a base chain the model cannot run, and
        UnsupportedRule for a rule whose effect it does not build (nat.rules.modelled)."""
        check_modelled(config.ruleset)
        self.config = config
        self.table = Table()
        self.hooks: HookTable = build_hook_table(config.ruleset)
        self.tracking = config.ruleset.needs_conntrack()

    # -- entry points ---------------------------------------------------------------------

    def receive(self, pkt: Packet, in_iface: str, now: float,
                choose: Chooser = default_chooser) -> Journey:
        """A packet received on `in_iface`: PRE_ROUTING, then FORWARD or LOCAL_IN."""
        w = _Walk(pkt, now, [], in_dev=self.config.net.device(in_iface))
        verdict = self._walk_input(w, choose)
        return self._journey(w, in_iface, pkt, verdict)

    def send_local(self, pkt: Packet, now: float, choose: Chooser = default_chooser) -> Journey:
        """A packet the gateway itself sends: LOCAL_OUT then POST_ROUTING, out the routed
        device. When that device is `lo` (the destination is one of the gateway's own
        addresses, before or after a LOCAL_OUT DNAT), the packet comes back in on `lo`
        (loopback_xmit -> netif_rx): PRE_ROUTING and LOCAL_IN, verdict "LOCAL". The skb
        keeps the entry conntrack attached on the way out, so nf_conntrack_in leaves it
        alone on the way in (it returns early for an skb that already has a non-template
        ct); the NAT hooks run as for any packet. A PRE_ROUTING DNAT on lo that sends the
        packet to another host is not followed (dropped, with a note)."""
        w = _Walk(pkt, now, [])
        verdict = self._walk_output(w, choose)
        if verdict != "ACCEPT" or w.out_dev is None \
                or w.out_dev.name != self.config.net.loopback.name:
            return self._journey(w, None, pkt, verdict)
        w.note(None, None, "loopback_xmit", "back in on lo")
        w.in_dev, w.out_dev, w.nexthop, w.looped = self.config.net.loopback, None, None, True
        if not self._hook(w, Hook.PRE_ROUTING, choose):
            return self._journey(w, "lo", pkt, "DROP")
        if not self.config.net.is_local(w.pkt.ip.dst):
            w.note(None, None, "ip_route_input", f"{w.pkt.ip.dst} is not local after "
                   "PRE_ROUTING on lo: not modelled, dropped")
            return self._journey(w, "lo", pkt, "DROP")
        verdict = "LOCAL" if self._hook(w, Hook.LOCAL_IN, choose) else "DROP"
        return self._journey(w, "lo", pkt, verdict)

    def entries(self, now: float) -> list[Entry]:
        """The table as `conntrack -L` would list it at `now`."""
        return self.table.entries(now)

    # -- changes from user space ----------------------------------------------------------

    def load_ruleset(self, ruleset: Ruleset) -> None:
        """A ruleset replaced mid-run (iptables-restore / `nft -f` commit a table replace).

        The conntrack table is untouched: an entry keeps the NAT binding it got, since the
        NAT core consults the rules only for a connection's first packet (nf_nat_inet_fn);
        new connections meet the new rules. Tracking follows the new rules: when none needs
        conntrack any more, the namespace stops tracking (nf_ct_netns_put); entries stay and
        time out. Raises ChainNotModelled for a base chain the model cannot run."""
        self.hooks = build_hook_table(ruleset)
        self.config = replace(self.config, ruleset=ruleset)
        self.tracking = ruleset.needs_conntrack()

    def set_sysctls(self, sysctls: Sysctls) -> None:
        """Sysctls written mid-run: read by the trackers at each later packet (a timeout
        applies from an entry's next refresh; nothing already in the table changes)."""
        self.config = replace(self.config, sysctls=sysctls)

    # -- paths ----------------------------------------------------------------------------

    def _walk_input(self, w: _Walk, choose: Chooser) -> str:
        """ip_rcv() -> ip_rcv_finish() (routing) -> ip_local_deliver() or ip_forward()."""
        if not self._hook(w, Hook.PRE_ROUTING, choose):
            return "DROP"
        if self.config.net.is_local(w.pkt.ip.dst):
            w.note(None, None, "ip_route_input", f"{w.pkt.ip.dst} is local: deliver (LOCAL_IN)")
            return "LOCAL" if self._hook(w, Hook.LOCAL_IN, choose) else "DROP"
        if not self.config.net.forwarding:
            w.note(None, None, "ip_route_input", "not local and forwarding is off: dropped")
            return "DROP"
        if not self._route(w):
            return "DROP"
        if w.pkt.ip.ttl <= 1:
            w.note(None, None, "ip_forward", "TTL would reach 0: dropped (time exceeded)")
            return "DROP"
        w.pkt = ip_decrease_ttl(w.pkt)
        w.note(None, None, "ip_forward", f"TTL {w.pkt.ip.ttl + 1} -> {w.pkt.ip.ttl}")
        if not self._hook(w, Hook.FORWARD, choose):
            return "DROP"
        return self._postrouting(w, choose)

    def _walk_output(self, w: _Walk, choose: Chooser) -> str:
        """The socket's route lookup, then __ip_local_out() (LOCAL_OUT) and ip_output()."""
        if not self._route(w):
            return "DROP"
        if not self._hook(w, Hook.LOCAL_OUT, choose):
            return "DROP"
        return self._postrouting(w, choose)

    def _postrouting(self, w: _Walk, choose: Chooser) -> str:
        """ip_output(): POST_ROUTING, then ip_finish_output2() hands the packet to the next
        hop's neighbour entry. When nobody answers ARP for it, the packet waits in the
        entry's queue and is dropped when resolution fails (neigh_invalidate); the entry
        was confirmed already. UNRESOLVED says so; the ICMP host unreachable the kernel
        then sends (ipv4_link_failure, ~3 s later with the default mcast_solicit and
        retrans_time) is the gateway's own packet, quoting this one."""
        if not self._hook(w, Hook.POST_ROUTING, choose):
            return "DROP"
        if w.out_dev is not None and w.nexthop is not None \
                and not self.config.net.resolves(w.out_dev, w.nexthop):
            w.note(None, None, "neigh_resolve_output",
                   f"no host answers ARP for {w.nexthop} on {w.out_dev.name}: queued, then "
                   "dropped when resolution fails (ICMP host unreachable to the sender)")
            return UNRESOLVED
        return "ACCEPT"

    def _hook(self, w: _Walk, hook: Hook, choose: Chooser) -> bool:
        """nf_hook_slow(): the hook's callbacks in table order; False when one drops."""
        for reg in self.hooks.at(hook):
            w.passed.append(reg)
            if not self._call(w, reg, choose):
                return False
        return True

    def _call(self, w: _Walk, reg: Registration, choose: Chooser) -> bool:
        """One callback, by its kind; True if it accepted the packet."""
        match reg.kind:
            case Kind.DEFRAG:        # the model does not reassemble (see nat/hook_table.py)
                return True
            case Kind.CONNTRACK:
                return self._conntrack_in(w, reg.hook)
            case Kind.NAT:
                return self._nat_hook(w, reg, choose)
            case Kind.FILTER_CHAIN:
                return self._filter_chain(w, reg, choose)
            case Kind.CONFIRM:
                return self._confirm(w, reg.hook)
            case Kind.NAT_CHAIN:     # pragma: no cover - only inside a NAT registration
                raise AssertionError(f"{reg.describe()} outside the NAT core")

    def _route(self, w: _Walk, again: bool = False) -> bool:
        """The FIB lookup (ip_route_input; ip_route_me_harder after a LOCAL_OUT DNAT)."""
        found = self.config.net.lookup(w.pkt.ip.dst)
        fn = "ip_route_me_harder" if again else "ip_route_input"
        if found is None:
            w.note(None, None, fn, f"no route to {w.pkt.ip.dst}: dropped")
            return False
        w.out_dev, w.nexthop = found
        via = f" via {w.nexthop}" if w.nexthop != w.pkt.ip.dst else ""
        w.note(None, None, fn, f"forward to {w.pkt.ip.dst} out {w.out_dev.name}{via}")
        return True

    # -- callbacks ------------------------------------------------------------------------

    def _conntrack_in(self, w: _Walk, hook: Hook) -> bool:
        """nf_conntrack_in() at -200: attach the entry (found or new, unconfirmed). A packet
        that already carries an entry (looped back on lo; REJECT's reset, nf_ct_attach) is
        let through as is."""
        if w.looped and w.conn is not None:
            w.note(hook, Priority.CONNTRACK, "nf_conntrack_in",
                   "looped back: the skb already has its entry, kept")
            return True
        if w.attached:
            w.note(hook, Priority.CONNTRACK, "nf_conntrack_in",
                   f"entry already attached ({w.ctinfo.name}): not looked up")
            return True
        res = nf_conntrack_in(self.table, w.pkt, hook, w.now, self.config.sysctls,
                              enabled=self.tracking, profile=self.config.profile)
        w.conn, w.ctinfo = res.conn, res.ctinfo
        if not self.tracking:
            return True
        notes = "; ".join(res.notes) or w.ctinfo.ctstate
        w.note(hook, Priority.CONNTRACK, "nf_conntrack_in", f"{w.ctinfo.name}: {notes}")
        return res.verdict != "DROP"

    def _filter_chain(self, w: _Walk, reg: Registration, choose: Chooser) -> bool:
        """One filter base chain (ipt_do_table / nft_do_chain), on the packet as it is now."""
        chain = reg.chain
        assert chain is not None
        outcome = evaluate(self.config.ruleset, chain, _rule_context(w))
        _note_logged(w, reg.hook, chain.priority, outcome.logged)
        target = outcome.target
        where = outcome.describe()
        if isinstance(target, Drop | Reject):
            w.note(reg.hook, chain.priority, f"{chain.table} {chain.name}",
                   f"{where}: dropped" + ("; the unconfirmed entry vanishes"
                                          if w.conn is not None and not w.conn.confirmed
                                          else ""))
            if isinstance(target, Reject):
                self._send_reset(w, reg.hook, chain.priority, choose)
            return False
        w.note(reg.hook, chain.priority, f"{chain.table} {chain.name}", f"{where}: accept")
        return True

    def _send_reset(self, w: _Walk, hook: Hook, prio: int, choose: Chooser) -> None:
        """nf_send_reset(): build the reset (nat/reject.py), attach the rejected packet's entry
        to it as RELATED_REPLY (RELATED for a reply-direction packet), move a confirmed TCP
        entry to CLOSE (nf_ct_set_closing), and send the reset with ip_local_out: LOCAL_OUT
        and POST_ROUTING, routed to the rejected packet's source. Only tcp-reset gets here
        (nat.rules.modelled refuses the other answers)."""
        why = no_reset_reason(w.pkt)
        if why is not None:
            w.note(hook, prio, "nf_send_reset", f"no reset: {why}")
            return
        rst = tcp_reset(w.pkt)
        assert rst is not None
        conn, ctinfo = w.conn, CtInfo.INVALID
        attached = conn is not None and w.ctinfo not in (CtInfo.INVALID, CtInfo.UNTRACKED)
        if conn is not None and attached:
            ctinfo = CtInfo.RELATED if w.ctinfo.is_reply else CtInfo.RELATED_REPLY
            conn = self._set_closing(w, hook, prio, conn)
        sub = _Walk(rst, w.now, [], conn=conn if attached else None, ctinfo=ctinfo,
                    attached=attached)
        w.note(hook, prio, "nf_send_reset", f"reset built: {rst.summary()}")
        verdict = self._walk_output(sub, choose)
        w.answers.append(self._journey(sub, None, rst, verdict))

    def _set_closing(self, w: _Walk, hook: Hook, prio: int, conn: Conn) -> Conn:
        """nf_conntrack_tcp_set_closing(): a confirmed TCP entry goes to CLOSE with the CLOSE
        timeout (unless already CLOSE or FIXED_TIMEOUT); an unconfirmed one is left alone."""
        current = self.table.get(conn.id)
        state = conn.proto_state
        if current is None or not conn.confirmed or not isinstance(state, TcpConnState):
            return conn
        current_state = current.proto_state
        if not isinstance(current_state, TcpConnState) or current_state.state is TcpState.CLOSE:
            return current
        closed = replace(current, proto_state=replace(current_state, state=TcpState.CLOSE))
        if not closed.status & Status.FIXED_TIMEOUT:
            closed = replace(closed, timeout=w.now + self.config.sysctls.tcp_timeout_close)
        self.table.replace(closed)
        w.note(hook, prio, "nf_ct_set_closing", f"entry {conn.id}: "
               f"{current_state.state.name} -> CLOSE")
        return closed

    def _nat_hook(self, w: _Walk, reg: Registration, choose: Chooser) -> bool:
        """The NAT core's callback; at LOCAL_OUT nf_nat_ipv4_local_fn re-routes when it
        changed the destination (ip_route_me_harder)."""
        before = w.pkt.ip.dst
        if not self._nf_nat_inet_fn(w, reg, choose):
            return False
        if reg.hook is Hook.LOCAL_OUT and w.pkt.ip.dst != before:
            return self._route(w, again=True)
        return True

    def _nf_nat_inet_fn(self, w: _Walk, reg: Registration, choose: Chooser) -> bool:
        """nf_nat_inet_fn(): bind on the first packet, then rewrite per the binding."""
        hook, prio = reg.hook, reg.priority
        manip = ManipType.for_hook(hook)
        ct = w.conn
        if ct is None:
            w.note(hook, prio, reg.callback, "no conntrack entry: not NATed")
            return True
        if w.ctinfo in (CtInfo.RELATED, CtInfo.RELATED_REPLY) and w.pkt.proto == Proto.ICMP \
                and isinstance(w.pkt.l4, IcmpHeader) and w.pkt.l4.type in ICMP_ERROR_TYPES:
            return self._icmp_reply_translation(w, hook, manip, prio)
        if w.ctinfo in (CtInfo.NEW, CtInfo.RELATED, CtInfo.RELATED_REPLY) \
                and not ct.status & manip.done_bit:
            bound = self._run_nat_chains(w, reg, manip, choose)
            if bound is None:
                return False
            if not bound:
                assert w.conn is not None
                before = w.conn.reply
                res = null_binding(w.conn, manip, self.table, w.now, self.config.profile,
                                   choose=lambda c: choose(c, manip))
                w.conn = res.conn
                self._evict(w, hook, prio, res.evicted)
                moved = ("" if res.conn.reply == before
                         else f"; reply tuple altered: {res.conn.reply}")
                w.note(hook, prio, "nf_nat_setup_info",
                       f"no rule bound {manip.name}: null binding{moved}")
        return self._nf_nat_packet(w, hook, manip, prio)

    def _run_nat_chains(self, w: _Walk, reg: Registration, manip: ManipType,
                        choose: Chooser) -> bool | None:
        """The nat chains the NAT core runs at `reg.hook`, in their order. True: a rule
        bound; False: no rule did (null binding follows); None: dropped."""
        assert w.conn is not None
        hook = reg.hook
        ctx = _rule_context(w)        # the packet does not change until a rule binds
        for inner in reg.nat_chains:
            chain = inner.chain
            assert chain is not None
            w.passed.append(inner)
            outcome = evaluate(self.config.ruleset, chain, ctx)
            _note_logged(w, hook, chain.priority, outcome.logged)
            target = outcome.target
            where = outcome.describe()
            if isinstance(target, Drop | Reject):
                w.note(hook, chain.priority, f"nat {chain.name}", f"{where}: dropped")
                return None
            rng = None
            if isinstance(target, Snat | Dnat):
                rng = target.range
            elif isinstance(target, Masquerade):
                if w.out_dev is None or w.nexthop is None:
                    w.note(hook, chain.priority, f"nat {chain.name}", "MASQUERADE without an "
                           "output device: dropped")
                    return None
                rng = masquerade_range(target, w.out_dev, w.nexthop, w.conn.orig.src)
                if rng is None:
                    w.note(hook, chain.priority, f"nat {chain.name}",
                           f"{where}: {w.out_dev.name} has no address: dropped")
                    return None
                w.conn = replace(w.conn, masq_index=w.out_dev.index)
            elif isinstance(target, Redirect):
                rng = redirect_range(target, hook, w.in_dev)
                if rng is None:
                    w.note(hook, chain.priority, f"nat {chain.name}",
                           f"{where}: incoming device has no address: dropped")
                    return None
            if rng is None:
                w.note(hook, chain.priority, f"nat {chain.name}", f"{where}: no binding")
                continue
            before = w.conn.reply
            res = nf_nat_setup_info(w.conn, rng, manip, self.table, w.now, self.config.profile,
                                    choose=lambda c: choose(c, manip))
            w.conn = res.conn
            self._evict(w, hook, chain.priority, res.evicted)
            altered = ("reply tuple altered: " + str(res.conn.reply)) \
                if res.conn.reply != before else "tuple unchanged"
            extra = f" (kernel may pick: {res.choice.describe()})" \
                if res.choice is not None and not res.choice.determined else ""
            w.note(hook, chain.priority, f"nat {chain.name}",
                   f"{where}: nf_nat_setup_info {manip.name}: {altered}{extra}")
            return True
        return False

    def _evict(self, w: _Walk, hook: Hook, prio: int, evicted: tuple[int, ...]) -> None:
        """6.12+: the port search killed TIME_WAIT/CLOSE entries to reuse their port."""
        for conn_id in evicted:
            self.table.delete(conn_id)
            w.note(hook, prio, "nf_nat_used_tuple_harder", f"evicted entry #{conn_id}")

    def _nf_nat_packet(self, w: _Walk, hook: Hook, manip: ManipType, prio: int) -> bool:
        """nf_nat_packet(): rewrite if this direction's binding changes anything here."""
        assert w.conn is not None
        direction = _direction(w.ctinfo)
        if not w.conn.status & _nat_bit(manip, direction):
            return True
        target = invert(w.conn.tuple(direction.other()))
        before = w.pkt
        try:
            w.pkt = manip_pkt(w.pkt, target, manip)
        except ManipError as exc:      # too short to rewrite: the kernel drops it
            w.note(hook, prio, "nf_nat_manip_pkt", f"{exc}: dropped")
            return False
        w.note(hook, prio, "nf_nat_manip_pkt", _describe_rewrite(before, w.pkt, manip))
        return True

    def _icmp_reply_translation(self, w: _Walk, hook: Hook, manip: ManipType, prio: int) -> bool:
        """nf_nat_icmp_reply_translation(): the quoted packet and the outer header. An error
        whose ICMP checksum is bad is dropped first (nf_ip_checksum); so is a redirect about
        an entry that is NATed or whose NAT is not done for both manip types."""
        assert w.conn is not None and isinstance(w.pkt.l4, IcmpHeader)
        if not checksums_ok(w.pkt)["l4"]:
            w.note(hook, prio, "nf_nat_icmp_reply_translation", "bad ICMP checksum: dropped")
            return False
        done = Status.SRC_NAT_DONE | Status.DST_NAT_DONE
        if w.pkt.l4.type == ICMP_REDIRECT and ((w.conn.status & done) != done
                                               or w.conn.status & (Status.SRC_NAT
                                                                   | Status.DST_NAT)):
            w.note(hook, prio, "nf_nat_icmp_reply_translation",
                   "redirect about a NATed (or not yet NAT-done) entry: dropped")
            return False
        direction = _direction(w.ctinfo)
        if not w.conn.status & _nat_bit(manip, direction):
            return True
        other = w.conn.tuple(direction.other())
        inner_manip = ManipType.DST if manip is ManipType.SRC else ManipType.SRC
        before = w.pkt
        try:
            w.pkt = icmp_reply_translation(w.pkt, other, inner_manip, invert(other), manip)
        except ManipError as exc:
            w.note(hook, prio, "nf_nat_icmp_reply_translation", f"{exc}: dropped")
            return False
        inner_before = icmp_error_inner(before)
        inner_after = icmp_error_inner(w.pkt)
        quoted = (f"; quoted {inner_before.summary()} -> {inner_after.summary()}"
                  if inner_before is not None and inner_after is not None else "")
        w.note(hook, prio, "nf_nat_icmp_reply_translation",
               _describe_rewrite(before, w.pkt, manip) + quoted)
        return True

    def _confirm(self, w: _Walk, hook: Hook) -> bool:
        """nf_confirm() at INT_MAX: a new entry enters the table (__nf_conntrack_confirm)."""
        if w.conn is None or not self.tracking:
            return True
        was_confirmed = w.conn.confirmed
        res = nf_conntrack_confirm(self.table, w.conn, w.ctinfo, w.now)
        w.conn = res.conn
        if not was_confirmed or res.notes:
            w.note(hook, Priority.CONNTRACK_CONFIRM, "__nf_conntrack_confirm",
                   "; ".join(res.notes) or "confirmed: the entry enters the table")
        return res.verdict != "DROP"

    # -- results --------------------------------------------------------------------------

    def _journey(self, w: _Walk, in_iface: str | None, pkt_in: Packet, verdict: str) -> Journey:
        entry = None
        if w.conn is not None:
            current = self.table.get(w.conn.id)
            if current is not None and not current.expired(w.now):
                entry = current.as_entry(w.now)
        return Journey(
            time=w.now,
            in_iface=in_iface,
            packet_in=pkt_in,
            steps=tuple(w.steps),
            passed=tuple(w.passed),
            verdict=verdict,
            packet_out=w.pkt if verdict in ("ACCEPT", "LOCAL", UNRESOLVED) else None,
            out_iface=w.out_dev.name if verdict in ("ACCEPT", UNRESOLVED) and w.out_dev
            else None,
            entry=entry,
            answers=tuple(w.answers),
        )


def _note_logged(w: _Walk, hook: Hook, prio: int, logged: tuple[Rule, ...]) -> None:
    """LOG / log rules the packet matched: the kernel writes a log line and goes on."""
    for rule in logged:
        where = f"line {rule.lineno}: " if rule.lineno else ""
        text = rule.source or rule.match.describe()
        w.note(hook, prio, "nf_log_packet", f"logged by {where}{text}")


def _rule_context(w: _Walk) -> RuleContext:
    """What a rule sees of the packet: the packet, in/out devices, the ct state and entry."""
    ct = None
    c = w.conn
    if c is not None and w.ctinfo not in (CtInfo.INVALID, CtInfo.UNTRACKED):
        ct = CtView(int(c.status), c.orig.proto, c.orig.src, c.orig.dst, c.orig.sport,
                    c.orig.dport, c.reply.src, c.reply.dst, c.reply.sport, c.reply.dport,
                    w.ctinfo.is_reply)
    return RuleContext(w.pkt, w.in_dev.name if w.in_dev else None,
                       w.out_dev.name if w.out_dev else None, w.ctinfo.ctstate, ct)


def _direction(ctinfo: CtInfo) -> Direction:
    """CTINFO2DIR()."""
    return Direction.REPLY if ctinfo.is_reply else Direction.ORIGINAL


def _nat_bit(manip: ManipType, direction: Direction) -> Status:
    """The status bit that says this manip rewrites packets going `direction`: SRC_NAT for
    SRC manip, DST_NAT for DST, swapped in the reply direction (nf_nat_packet)."""
    bit = manip.nat_bit
    if direction is Direction.REPLY:
        bit = Status.DST_NAT if bit is Status.SRC_NAT else Status.SRC_NAT
    return bit


def ip_decrease_ttl(pkt: Packet) -> Packet:
    """ip_decrease_ttl() (include/net/ip.h): TTL - 1 with the kernel's checksum shortcut.

    The kernel loads the 16-bit checksum field into a CPU word, adds htons(0x0100) and folds a
    carry by adding 1 when the sum reached 0xFFFF. That arithmetic happens in the CPU's byte
    order, so it is done here as on little-endian x86_64: byte-exact with the kernel there.
    """
    field = pkt.ip.checksum
    word = ((field & 0xFF) << 8) | (field >> 8)      # the field as a little-endian load sees it
    word += 1                                        # htons(0x0100) on little-endian
    word = (word + (1 if word >= 0xFFFF else 0)) & 0xFFFF
    check = ((word & 0xFF) << 8) | (word >> 8)
    return replace(pkt, ip=replace(pkt.ip, ttl=pkt.ip.ttl - 1, checksum=check))


def _describe_rewrite(before: Packet, after: Packet, manip: ManipType) -> str:
    if manip is ManipType.SRC:
        old, new = _endpoint(before, src=True), _endpoint(after, src=True)
        return f"source {old} -> {new}"
    old, new = _endpoint(before, src=False), _endpoint(after, src=False)
    return f"destination {old} -> {new}"


def _endpoint(pkt: Packet, src: bool) -> str:
    addr = pkt.ip.src if src else pkt.ip.dst
    l4 = pkt.l4
    if l4 is None or isinstance(l4, IcmpHeader):
        ident = f" id {l4.id}" if isinstance(l4, IcmpHeader) and l4.type not in ICMP_ERROR_TYPES \
            else ""
        return f"{addr}{ident}"
    return f"{addr}:{l4.sport if src else l4.dport}"
