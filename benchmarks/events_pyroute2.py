"""conntrack events: `conntrack -E` (what EventLog runs) vs pyroute2 in a forked child that
entered the namespace (docs/bench.md). Root; pyroute2 is not a natlab dependency:

    .venv/bin/pip install pyroute2 && .venv/bin/python benchmarks/events_pyroute2.py [N]

In a fresh namespace of its own (random name, deleted at the end; the root namespace is not
touched), one process sends N UDP datagrams from 127.0.0.1 to N ports of 127.0.0.2 with a
conntrack-using nft rule loaded: N NEW events. Reported per listener: time to be subscribed,
time until all N NEW events were received (10-s cap), the listener's CPU, the parse time of
`conntrack -E`'s text into ConntrackEvent, and how many NEW events arrived. The pyroute2 child
only decodes the messages (type and original tuple), less work than the text parse gives.
Rounds: ROUNDS (default 3); FORCE=1 sets SO_RCVBUFFORCE 8 MiB on pyroute2's socket.
"""
import os, secrets, shutil, subprocess, sys, tempfile, time
from pathlib import Path
from experiments.kernel.conntrack import netlink_socket_state, parse_event_line

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
NS = "nlb" + secrets.token_hex(3)
TMP = Path(tempfile.mkdtemp(prefix="natlab-events-bench-"))
def sh(*a): subprocess.run(a, check=True)
def ns(*a): subprocess.run(("ip", "netns", "exec", NS) + a, check=True)
SENDER = ("import socket,sys\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
          "s.bind(('127.0.0.1',5000))\n"
          "for p in range(10000,10000+int(sys.argv[1])): s.sendto(b'x',('127.0.0.2',p))")

def traffic(base):
    ns(sys.executable, "-c", SENDER.replace("10000", str(base)), str(N))

def case_cli(base, path):
    t0 = time.perf_counter()
    out = open(path, "wb")
    err = open(path + ".err", "wb")
    p = subprocess.Popen(("ip", "netns", "exec", NS, "stdbuf", "-oL", "conntrack", "-E", "-f",
                          "ipv4", "-o", "timestamp"), stdout=out, stderr=err)
    while True:
        # ip netns exec execs conntrack in place: same pid
        if netlink_socket_state(p.pid) is not None: break
        time.sleep(0.001)
    t_ready = time.perf_counter() - t0
    t1 = time.perf_counter(); traffic(base); t_sent = time.perf_counter() - t1
    dl = time.monotonic() + 10
    while Path(path).read_bytes().count(b"[NEW]") < N and time.monotonic() < dl:
        time.sleep(0.001)
    t_all = time.perf_counter() - t1
    p.terminate(); _, _, ru = os.wait4(p.pid, 0); out.close()
    t2 = time.perf_counter()
    evs = [e for e in map(parse_event_line, Path(path).read_text().splitlines()) if e]
    t_parse = time.perf_counter() - t2
    got = sum(e.type == "NEW" for e in evs)
    errtxt = Path(path + ".err").read_text().strip().replace("\n", " | ")[:120]
    return t_ready, t_sent, t_all, ru.ru_utime + ru.ru_stime, t_parse, got, errtxt

def case_pyroute2(base):
    r, w = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            fd = os.open(f"/run/netns/{NS}", os.O_RDONLY); import ctypes; assert ctypes.CDLL(None, use_errno=True).setns(fd, 0x40000000) == 0
            from pyroute2.netlink import NETLINK_NETFILTER
            from pyroute2.netlink.nlsocket import NetlinkSocket
            from pyroute2.netlink.nfnetlink.nfctsocket import AsyncNFCTSocket
            s = NetlinkSocket(family=NETLINK_NETFILTER, rcvbuf=8 << 20)
            s.register_policy(AsyncNFCTSocket.policy)
            if os.environ.get("FORCE"):
                import socket as so
                s.setsockopt(so.SOL_SOCKET, 33, 8 << 20)   # SO_RCVBUFFORCE, as conntrack -E
            s.bind(groups=0b111)
            os.write(w, b"r")
            n = 0; got = []; lost = 0
            import signal
            def alarm(*a): raise TimeoutError
            signal.signal(signal.SIGALRM, alarm); signal.alarm(12)
            while n < N:
                try:
                    msgs = s.get()
                except OSError as e:
                    if e.errno != 105: raise
                    lost += 1
                    s.close()
                    break
                for m in msgs:
                    # what EventLog needs from each event: type and the original tuple
                    t = m.get_nested("CTA_TUPLE_ORIG", "CTA_TUPLE_IP")
                    pr = m.get_nested("CTA_TUPLE_ORIG", "CTA_TUPLE_PROTO")
                    got.append((m["header"]["type"] & 0xFF, t.get("CTA_IP_V4_SRC"),
                                t.get("CTA_IP_V4_DST"), pr.get("CTA_PROTO_SRC_PORT"),
                                pr.get("CTA_PROTO_DST_PORT"), m.get("CTA_TIMEOUT"),
                                m.get("CTA_STATUS")))
                    n += bool(m["header"]["flags"] & 0x400)
            os.write(w, f"d {n} ENOBUFS={lost}".encode())
        except TimeoutError:
            os.write(w, f"d {n} timeout".encode())
        except BaseException as e:
            os.write(w, ("d %d lost-events:%s" % (n, repr(e).replace(" ", "")[:60])).encode())
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"r"
    while netlink_socket_state(pid) is None:
        time.sleep(0.001)
    t_ready = time.perf_counter() - t0
    t1 = time.perf_counter(); traffic(base); t_sent = time.perf_counter() - t1
    msg = os.read(r, 100).decode().split()
    t_all = time.perf_counter() - t1
    _, _, ru = os.wait4(pid, 0)
    return t_ready, t_sent, t_all, ru.ru_utime + ru.ru_stime, 0.0, int(msg[1]), " ".join(msg[2:])

sh("ip", "netns", "add", NS)
try:
    ns("ip", "link", "set", "lo", "up")
    ns("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
    p = subprocess.run(("ip", "netns", "exec", NS, "nft", "-f", "-"), input=
        b"table ip t { chain o { type filter hook output priority 0; ct state new counter; }; }",
        check=True)
    base = 1000
    for rnd in range(int(os.environ.get("ROUNDS", "3"))):
        for name in ("cli", "pyroute2"):
            ns("conntrack", "-F")
            time.sleep(0.2)
            res = case_cli(base, str(TMP / "events.txt")) if name == "cli" else case_pyroute2(base)
            base += 1  # different source port range each time? (dports shift; flush anyway)
            print(f"{name:9s} N={N} ready {res[0]*1000:7.1f} ms  traffic {res[1]:.2f} s  all events in {res[2]:.2f} s  "
                  f"listener CPU {res[3]:.2f} s  + parse {res[4]:.2f} s  NEW received {res[5]} {res[6]}", flush=True)
finally:
    sh("ip", "netns", "del", NS)
    shutil.rmtree(TMP)
