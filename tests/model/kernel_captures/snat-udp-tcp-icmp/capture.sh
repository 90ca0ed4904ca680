#!/bin/bash
# How the files next to this script were made (root; Linux 6.18.44, iptables-nft 1.8.9,
# conntrack-tools 1.4.7): client 192.0.2.10 -- gateway (SNAT udp -> :7000, tcp -> :7001,
# MASQUERADE otherwise) -- server 198.51.100.2, checksum offloads off, tcpdump on the client's
# and the server's interface, then `conntrack -L` in the gateway. Traffic: UDP to a closed port
# (with and without a UDP checksum: port unreachable comes back), a short TCP exchange, a ping.
# Usage: capture.sh OUTDIR   (run-scoped namespace names; everything is deleted on exit)
set -u
R=$RANDOM
C=natlabCc$R; G=natlabCg$R; S=natlabCs$R
OUT=${1:?usage: capture.sh OUTDIR}; mkdir -p "$OUT"
cleanup() { for n in $C $G $S; do ip netns del $n 2>/dev/null; done; }
trap cleanup EXIT
set -e
for n in $C $G $S; do ip netns add $n; ip -n $n link set lo up; done
ip link add nlCc$R netns $C type veth peer name nlCg1$R netns $G
ip link add nlCs$R netns $S type veth peer name nlCg2$R netns $G
ip -n $C addr add 192.0.2.10/24 dev nlCc$R; ip -n $C link set nlCc$R up
ip -n $G addr add 192.0.2.1/24 dev nlCg1$R; ip -n $G link set nlCg1$R up
ip -n $G addr add 198.51.100.1/24 dev nlCg2$R; ip -n $G link set nlCg2$R up
ip -n $S addr add 198.51.100.2/24 dev nlCs$R; ip -n $S link set nlCs$R up
ip -n $C route add default via 192.0.2.1
ip -n $S route add default via 198.51.100.1
for pair in "$C nlCc$R" "$G nlCg1$R" "$G nlCg2$R" "$S nlCs$R"; do set -- $pair; ip netns exec $1 ethtool -K $2 tx off rx off >/dev/null 2>&1; done
ip netns exec $G sysctl -qw net.ipv4.ip_forward=1
ip netns exec $G iptables -t nat -A POSTROUTING -o nlCg2$R -p udp -j SNAT --to-source 198.51.100.1:7000
ip netns exec $G iptables -t nat -A POSTROUTING -o nlCg2$R -p tcp -j SNAT --to-source 198.51.100.1:7001
ip netns exec $G iptables -t nat -A POSTROUTING -o nlCg2$R -j MASQUERADE
ip netns exec $C tcpdump -i nlCc$R -w $OUT/client.pcap -U -s 0 2>/dev/null & P1=$!
ip netns exec $S tcpdump -i nlCs$R -w $OUT/server.pcap -U -s 0 2>/dev/null & P2=$!
ip netns exec $S python3 -c '
import socket,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("198.51.100.2",80)); s.listen(1)
c,_=s.accept(); c.send(b"hello"); time.sleep(1)' & P3=$!
sleep 1
ip netns exec $C python3 -c '
import socket,time
u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.bind(("192.0.2.10",49000)); u.sendto(b"x"*10,("198.51.100.2",5000))
v=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); v.setsockopt(socket.SOL_SOCKET, 11, 1); v.bind(("192.0.2.10",49001)); v.sendto(b"y"*7,("198.51.100.2",5001))
time.sleep(0.2)
t=socket.create_connection(("198.51.100.2",80)); t.recv(10); t.send(b"bye"); time.sleep(0.3); t.close()'
ip netns exec $C ping -c1 -W1 198.51.100.2 >/dev/null
sleep 0.5
ip netns exec $G conntrack -L 2>/dev/null > $OUT/conntrack.txt
kill $P1 $P2 2>/dev/null; wait $P1 $P2 2>/dev/null || true
kill $P3 2>/dev/null || true; wait $P3 2>/dev/null || true
cat $OUT/conntrack.txt
