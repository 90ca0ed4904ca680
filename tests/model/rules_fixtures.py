# ruff: noqa: E501, E101, W191, W291
"""Rulesets and their real nft forms, recorded on this project's machine kind (Debian 12,
iptables 1.8.9 nf_tables, nftables 1.0.6, Linux 6.18) for the parser tests.

*_TRANSLATED: `iptables-restore-translate -f FILE` output. *_LISTED: `nft list ruleset` after
loading the translation with `nft -f` in a scratch namespace. *_IPT_LISTED: `nft list ruleset`
after loading the iptables text with `iptables-restore` (nf_tables backend). Kept verbatim.
"""

# NAT targets with ranges and flags, filter chains with jumps, goto, multiport, REJECT.
A_RULES = """\
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8
-A PREROUTING -i wan0 -p tcp -m tcp --dport 8000:8010 -j DNAT --to-destination 192.168.1.8-192.168.1.9:7000-7010 --random --persistent
-A POSTROUTING -o wan0 -p udp -s 192.168.1.0/24 -j MASQUERADE --to-ports 1024-2000 --random-fully
-A POSTROUTING -o eth+ -p tcp ! -d 10.0.0.0/8 -j SNAT --to-source 203.0.113.5:5000
-A OUTPUT -p tcp --dport 80 -j REDIRECT --to-ports 8080
-A PREROUTING -p icmp -m icmp --icmp-type echo-request -j ACCEPT
-A PREROUTING -p icmp --icmp-type 8 -j RETURN
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:mychain - [0:0]
-A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -m state --state NEW -i lan0 -j mychain
-A FORWARD -p tcp --syn -j REJECT --reject-with tcp-reset
-A FORWARD -p udp -m multiport --dports 53,123:130 -j ACCEPT
-A FORWARD ! -i lan+ -g mychain
-A mychain -m comment --comment "hello world" -j DROP
-A mychain -p tcp ! --dport 22 -j REJECT
-A mychain -p 47 -j DROP
-A INPUT -p tcp --sport 1:1023 -j ACCEPT
-A INPUT -p all -j ACCEPT
-I INPUT 1 -s 1.2.3.4 -j DROP
-A INPUT -m conntrack --ctstate INVALID,UNTRACKED -j DROP
-A INPUT -p icmp -j REJECT --reject-with icmp-host-unreachable
-A INPUT -p udp -j REJECT --reject-with icmp-port-unreachable
COMMIT
"""

# iptables-restore-translate -f A_RULES
A_TRANSLATED = """\
# Translated by iptables-restore-translate v1.8.9 on Mon Nov 23 12:05:18 2026
add table ip nat
add chain ip nat PREROUTING { type nat hook prerouting priority -100; policy accept; }
add chain ip nat POSTROUTING { type nat hook postrouting priority 100; policy accept; }
add chain ip nat OUTPUT { type nat hook output priority -100; policy accept; }
add rule ip nat PREROUTING iifname "wan0" udp dport 9999 counter dnat to 192.168.1.8
add rule ip nat PREROUTING iifname "wan0" tcp dport 8000-8010 counter dnat to 192.168.1.8-192.168.1.9:7000-7010 random,persistent
add rule ip nat POSTROUTING oifname "wan0" ip protocol udp ip saddr 192.168.1.0/24 counter masquerade to :1024-2000 fully-random
add rule ip nat POSTROUTING oifname "eth*" ip protocol tcp ip daddr != 10.0.0.0/8 counter snat to 203.0.113.5:5000
add rule ip nat OUTPUT tcp dport 80 counter redirect to :8080
add rule ip nat PREROUTING icmp type echo-request counter accept
add rule ip nat PREROUTING icmp type echo-request counter return
add table ip filter
add chain ip filter INPUT { type filter hook input priority 0; policy accept; }
add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }
add chain ip filter OUTPUT { type filter hook output priority 0; policy accept; }
add chain ip filter mychain
add rule ip filter FORWARD ct state related,established counter accept
add rule ip filter FORWARD iifname "lan0" ct state new counter jump mychain
add rule ip filter FORWARD tcp flags syn / fin,syn,rst,ack counter reject with tcp reset
add rule ip filter FORWARD ip protocol udp udp dport { 53, 123-130 } counter accept
add rule ip filter FORWARD iifname != "lan*" counter goto mychain
add rule ip filter mychain counter drop comment "hello world"
add rule ip filter mychain tcp dport != 22 counter reject
add rule ip filter mychain ip protocol gre counter drop
add rule ip filter INPUT tcp sport 1-1023 counter accept
add rule ip filter INPUT counter accept
insert rule ip filter INPUT ip saddr 1.2.3.4 counter drop
add rule ip filter INPUT ct state invalid,untracked counter drop
add rule ip filter INPUT ip protocol icmp counter reject with icmp type host-unreachable
add rule ip filter INPUT ip protocol udp counter reject
# Completed on Mon Nov 23 12:05:18 2026
"""

# nft -f A_TRANSLATED; nft list ruleset
A_LISTED = """\
table ip nat {
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" udp dport 9999 counter packets 0 bytes 0 dnat to 192.168.1.8
		iifname "wan0" tcp dport 8000-8010 counter packets 0 bytes 0 dnat to 192.168.1.8/31:7000-7010 random,persistent
		icmp type echo-request counter packets 0 bytes 0 accept
		icmp type echo-request counter packets 0 bytes 0 return
	}

	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" ip protocol udp ip saddr 192.168.1.0/24 counter packets 0 bytes 0 masquerade to :1024-2000 fully-random
		oifname "eth*" ip protocol tcp ip daddr != 10.0.0.0/8 counter packets 0 bytes 0 snat to 203.0.113.5:5000
	}

	chain OUTPUT {
		type nat hook output priority -100; policy accept;
		tcp dport 80 counter packets 0 bytes 0 redirect to :8080
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy accept;
		ip saddr 1.2.3.4 counter packets 0 bytes 0 drop
		tcp sport 1-1023 counter packets 0 bytes 0 accept
		counter packets 0 bytes 0 accept
		ct state invalid,untracked counter packets 0 bytes 0 drop
		ip protocol icmp counter packets 0 bytes 0 reject with icmp host-unreachable
		ip protocol udp counter packets 0 bytes 0 reject
	}

	chain FORWARD {
		type filter hook forward priority filter; policy drop;
		ct state established,related counter packets 0 bytes 0 accept
		iifname "lan0" ct state new counter packets 0 bytes 0 jump mychain
		tcp flags syn / fin,syn,rst,ack counter packets 0 bytes 0 reject with tcp reset
		udp dport { 53, 123-130 } counter packets 0 bytes 0 accept
		iifname != "lan*" counter packets 0 bytes 0 goto mychain
	}

	chain OUTPUT {
		type filter hook output priority filter; policy accept;
	}

	chain mychain {
		counter packets 0 bytes 0 drop comment "hello world"
		tcp dport != 22 counter packets 0 bytes 0 reject
		ip protocol gre counter packets 0 bytes 0 drop
	}
}
"""

# iptables-restore < A_RULES; nft list ruleset
A_IPT_LISTED = """\
table ip nat {
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" udp dport 9999 counter packets 0 bytes 0 dnat to 192.168.1.8
		iifname "wan0" tcp dport 8000-8010 counter packets 0 bytes 0 dnat to 192.168.1.8-192.168.1.9:7000-7010 random,persistent
		meta l4proto icmp icmp type echo-request counter packets 0 bytes 0 accept
		meta l4proto icmp icmp type echo-request counter packets 0 bytes 0 return
	}

	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" meta l4proto udp ip saddr 192.168.1.0/24 counter packets 0 bytes 0 masquerade to :1024-2000 fully-random
		oifname "eth*" meta l4proto tcp ip daddr != 10.0.0.0/8 counter packets 0 bytes 0 snat to 203.0.113.5:5000
	}

	chain OUTPUT {
		type nat hook output priority -100; policy accept;
		tcp dport 80 counter packets 0 bytes 0 redirect to :8080
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy accept;
		ip saddr 1.2.3.4 counter packets 0 bytes 0 drop
		tcp sport 1-1023 counter packets 0 bytes 0 accept
		counter packets 0 bytes 0 accept
		ct state invalid,untracked counter packets 0 bytes 0 drop
		meta l4proto icmp counter packets 0 bytes 0 reject with icmp type host-unreachable
		meta l4proto udp counter packets 0 bytes 0 reject
	}

	chain FORWARD {
		type filter hook forward priority filter; policy drop;
		ct state related,established counter packets 0 bytes 0 accept
		iifname "lan0" ct state new counter packets 0 bytes 0 jump mychain
		tcp flags syn / fin,syn,rst,ack counter packets 0 bytes 0 reject with tcp reset
		meta l4proto udp udp dport { 53, 123-130 } counter packets 0 bytes 0 accept
		iifname != "lan*" counter packets 0 bytes 0 goto mychain
	}

	chain OUTPUT {
		type filter hook output priority filter; policy accept;
	}

	chain mychain {
		 counter packets 0 bytes 0 drop
		tcp dport != 22 counter packets 0 bytes 0 reject
		meta l4proto gre counter packets 0 bytes 0 drop
	}
}
"""

# A port-forward user chain in nat, SNAT at INPUT, a filter with DROP policy.
B_RULES = """\
# Port forwards and a small firewall
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:portfwd - [0:0]
-A PREROUTING -i wan0 -j portfwd
-A portfwd -p tcp -m tcp --dport 2222 -j DNAT --to-destination 192.168.1.8:22
-A portfwd -p udp -m multiport --dports 5000:5010,6000 -j DNAT --to-destination 192.168.1.9
-A portfwd -d 203.0.113.1/32 -p icmp -j RETURN
-A INPUT -s 10.0.0.0/8 -j SNAT --to-source 10.0.0.1
-A POSTROUTING -o wan0 -p udp --sport 53 -j SNAT --to-source 203.0.113.1:1024-65535 --random
-A POSTROUTING -o wan0 -j MASQUERADE --random-fully
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:lan - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack ! --ctstate NEW -j ACCEPT
-A INPUT -p tcp -m tcp --tcp-flags SYN,ACK SYN --dport 22 -j lan
-A INPUT -p icmp -m icmp --icmp-type echo-request -j ACCEPT
-A INPUT -s 192.168.1.8,192.168.1.9 -p udp -j ACCEPT
-A lan -s 192.168.1.0/24 -j ACCEPT
-A lan -j RETURN
-A FORWARD -p tcp -m multiport ! --sports 1:1023 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -m state --state NEW,ESTABLISHED,RELATED -j ACCEPT
-A FORWARD -p tcp -j REJECT --reject-with tcp-reset
-A FORWARD -j REJECT --reject-with icmp-admin-prohibited
COMMIT
"""

# iptables-restore-translate -f B_RULES
B_TRANSLATED = """\
# Translated by iptables-restore-translate v1.8.9 on Mon Nov 23 12:16:29 2026
add table ip nat
add chain ip nat PREROUTING { type nat hook prerouting priority -100; policy accept; }
add chain ip nat INPUT { type nat hook input priority 100; policy accept; }
add chain ip nat OUTPUT { type nat hook output priority -100; policy accept; }
add chain ip nat POSTROUTING { type nat hook postrouting priority 100; policy accept; }
add chain ip nat portfwd
add rule ip nat PREROUTING iifname "wan0" counter jump portfwd
add rule ip nat portfwd tcp dport 2222 counter dnat to 192.168.1.8:22
add rule ip nat portfwd ip protocol udp udp dport { 5000-5010, 6000 } counter dnat to 192.168.1.9
add rule ip nat portfwd ip protocol icmp ip daddr 203.0.113.1 counter return
add rule ip nat INPUT ip saddr 10.0.0.0/8 counter snat to 10.0.0.1
add rule ip nat POSTROUTING oifname "wan0" udp sport 53 counter snat to 203.0.113.1:1024-65535 random
add rule ip nat POSTROUTING oifname "wan0" counter masquerade fully-random
add table ip filter
add chain ip filter INPUT { type filter hook input priority 0; policy drop; }
add chain ip filter FORWARD { type filter hook forward priority 0; policy accept; }
add chain ip filter OUTPUT { type filter hook output priority 0; policy accept; }
add chain ip filter lan
add rule ip filter INPUT iifname "lo" counter accept
add rule ip filter INPUT ct state ! new counter accept
add rule ip filter INPUT tcp dport 22 tcp flags syn / syn,ack counter jump lan
add rule ip filter INPUT icmp type echo-request counter accept
add rule ip filter INPUT ip protocol udp ip saddr 192.168.1.8 counter accept
add rule ip filter INPUT ip protocol udp ip saddr 192.168.1.9 counter accept
add rule ip filter lan ip saddr 192.168.1.0/24 counter accept
add rule ip filter lan counter return
add rule ip filter FORWARD ip protocol tcp tcp sport != 1-1023 counter accept
add rule ip filter FORWARD iifname "lan0" oifname "wan0" ct state new,related,established counter accept
add rule ip filter FORWARD ip protocol tcp counter reject with tcp reset
add rule ip filter FORWARD counter reject with icmp type admin-prohibited
# Completed on Mon Nov 23 12:16:29 2026
"""

# nft -f B_TRANSLATED; nft list ruleset
B_LISTED = """\
table ip nat {
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" counter packets 0 bytes 0 jump portfwd
	}

	chain INPUT {
		type nat hook input priority 100; policy accept;
		ip saddr 10.0.0.0/8 counter packets 0 bytes 0 snat to 10.0.0.1
	}

	chain OUTPUT {
		type nat hook output priority -100; policy accept;
	}

	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" udp sport 53 counter packets 0 bytes 0 snat to 203.0.113.1:1024-65535 random
		oifname "wan0" counter packets 0 bytes 0 masquerade fully-random
	}

	chain portfwd {
		tcp dport 2222 counter packets 0 bytes 0 dnat to 192.168.1.8:22
		udp dport { 5000-5010, 6000 } counter packets 0 bytes 0 dnat to 192.168.1.9
		ip protocol icmp ip daddr 203.0.113.1 counter packets 0 bytes 0 return
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy drop;
		iifname "lo" counter packets 0 bytes 0 accept
		ct state ! new counter packets 0 bytes 0 accept
		tcp dport 22 tcp flags syn / syn,ack counter packets 0 bytes 0 jump lan
		icmp type echo-request counter packets 0 bytes 0 accept
		ip protocol udp ip saddr 192.168.1.8 counter packets 0 bytes 0 accept
		ip protocol udp ip saddr 192.168.1.9 counter packets 0 bytes 0 accept
	}

	chain FORWARD {
		type filter hook forward priority filter; policy accept;
		tcp sport != 1-1023 counter packets 0 bytes 0 accept
		iifname "lan0" oifname "wan0" ct state established,related,new counter packets 0 bytes 0 accept
		ip protocol tcp counter packets 0 bytes 0 reject with tcp reset
		counter packets 0 bytes 0 reject with icmp admin-prohibited
	}

	chain OUTPUT {
		type filter hook output priority filter; policy accept;
	}

	chain lan {
		ip saddr 192.168.1.0/24 counter packets 0 bytes 0 accept
		counter packets 0 bytes 0 return
	}
}
"""

# iptables-restore < B_RULES; nft list ruleset
B_IPT_LISTED = """\
table ip nat {
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" counter packets 0 bytes 0 jump portfwd
	}

	chain INPUT {
		type nat hook input priority 100; policy accept;
		ip saddr 10.0.0.0/8 counter packets 0 bytes 0 snat to 10.0.0.1
	}

	chain OUTPUT {
		type nat hook output priority -100; policy accept;
	}

	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" udp sport 53 counter packets 0 bytes 0 snat to 203.0.113.1:1024-65535 random
		oifname "wan0" counter packets 0 bytes 0 masquerade fully-random
	}

	chain portfwd {
		tcp dport 2222 counter packets 0 bytes 0 dnat to 192.168.1.8:22
		meta l4proto udp udp dport { 5000-5010, 6000 } counter packets 0 bytes 0 dnat to 192.168.1.9
		meta l4proto icmp ip daddr 203.0.113.1 counter packets 0 bytes 0 return
	}
}
table ip filter {
	chain INPUT {
		type filter hook input priority filter; policy drop;
		iifname "lo" counter packets 0 bytes 0 accept
		ct state ! new counter packets 0 bytes 0 accept
		tcp flags syn / syn,ack tcp dport 22 counter packets 0 bytes 0 jump lan
		meta l4proto icmp icmp type echo-request counter packets 0 bytes 0 accept
		meta l4proto udp ip saddr 192.168.1.8 counter packets 0 bytes 0 accept
		meta l4proto udp ip saddr 192.168.1.9 counter packets 0 bytes 0 accept
	}

	chain FORWARD {
		type filter hook forward priority filter; policy accept;
		meta l4proto tcp tcp sport != 1-1023 counter packets 0 bytes 0 accept
		iifname "lan0" oifname "wan0" ct state new,related,established counter packets 0 bytes 0 accept
		meta l4proto tcp counter packets 0 bytes 0 reject with tcp reset
		counter packets 0 bytes 0 reject with icmp type admin-prohibited
	}

	chain OUTPUT {
		type filter hook output priority filter; policy accept;
	}

	chain lan {
		ip saddr 192.168.1.0/24 counter packets 0 bytes 0 accept
		counter packets 0 bytes 0 return
	}
}
"""

# experiments/specs/seed-dnat-udp.toml's rules
SEED_DNAT_UDP = """\
*nat
-A PREROUTING -i wan0 -p udp --dport 9999 -j DNAT --to-destination 192.168.1.8
COMMIT
"""

# Its translation: no `add chain` lines (the text declares no chains), so `nft -f`
# refuses it: 'Could not process rule: No such file or directory'.
SEED_DNAT_UDP_TRANSLATED = """\
# Translated by iptables-restore-translate v1.8.9 on Mon Nov 23 12:16:54 2026
add table ip nat
add rule ip nat PREROUTING iifname "wan0" udp dport 9999 counter dnat to 192.168.1.8
# Completed on Mon Nov 23 12:16:54 2026
"""

# iptables-restore < SEED_DNAT_UDP; nft list ruleset
SEED_DNAT_UDP_IPT_LISTED = """\
# Warning: table ip nat is managed by iptables-nft, do not touch!
table ip nat {
	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" udp dport 9999 counter packets 0 bytes 0 dnat to 192.168.1.8
	}
}
"""

# experiments/specs/seed-snat-tcp.toml's rules
SEED_SNAT_TCP = """\
*nat
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
"""

# Its translation, refused by `nft -f` like SEED_DNAT_UDP_TRANSLATED.
SEED_SNAT_TCP_TRANSLATED = """\
# Translated by iptables-restore-translate v1.8.9 on Mon Nov 23 12:16:54 2026
add table ip nat
add rule ip nat POSTROUTING oifname "wan0" counter masquerade
# Completed on Mon Nov 23 12:16:54 2026
"""

# iptables-restore < SEED_SNAT_TCP; nft list ruleset
SEED_SNAT_TCP_IPT_LISTED = """\
# Warning: table ip nat is managed by iptables-nft, do not touch!
table ip nat {
	chain POSTROUTING {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" counter packets 0 bytes 0 masquerade
	}
}
"""

# Written by hand in nft syntax (loads with `nft -f` as is).
HAND_NFT = """\
#!/usr/sbin/nft -f
# A home gateway written by hand.
flush ruleset

table inet gw {
	chain pre {
		type nat hook prerouting priority dstnat + 10; policy accept;
		iifname "wan0" tcp dport { 80, 443 } dnat ip to 192.168.1.8
		iifname "wan0" udp dport 9999 dnat ip to 192.168.1.8:9000 comment "game server"
	}

	chain post {
		type nat hook postrouting priority srcnat
		policy accept
		meta nfproto ipv4 oifname "wan*" masquerade random,persistent
	}

	chain forward_filter {
		type filter hook forward priority filter - 5; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lan0" jump lan_out
		tcp flags & (syn | ack) == syn tcp dport 22 ct state new accept
		icmp type destination-unreachable icmp code frag-needed accept
		reject with icmpx type admin-prohibited
	}

	chain lan_out {
		ip saddr != 192.168.1.0/24 drop
		tcp flags syn meta l4proto tcp continue
		goto allow
	}

	chain allow {
		counter accept
	}
}

table ip extra {
	chain out {
		type nat hook output priority -100; policy accept;
		tcp dport 8080 redirect to :80
	}
	chain in {
		type filter hook input priority 0; policy accept;
		tcp dport 22 reject with tcp reset
		udp dport != 53 reject with icmp type port-unreachable
	}
}
"""

# nft -f HAND_NFT; nft list ruleset
HAND_LISTED = """\
table inet gw {
	chain pre {
		type nat hook prerouting priority dstnat + 10; policy accept;
		iifname "wan0" tcp dport { 80, 443 } dnat ip to 192.168.1.8
		iifname "wan0" udp dport 9999 dnat ip to 192.168.1.8:9000 comment "game server"
	}

	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		meta nfproto ipv4 oifname "wan*" masquerade random,persistent
	}

	chain forward_filter {
		type filter hook forward priority filter - 5; policy drop;
		ct state established,related accept
		ct state invalid drop
		iifname "lan0" jump lan_out
		tcp flags syn / syn,ack tcp dport 22 ct state new accept
		icmp type destination-unreachable icmp code frag-needed accept
		reject with icmpx admin-prohibited
	}

	chain lan_out {
		ip saddr != 192.168.1.0/24 drop
		tcp flags syn meta l4proto tcp continue
		goto allow
	}

	chain allow {
		counter packets 0 bytes 0 accept
	}
}
table ip extra {
	chain out {
		type nat hook output priority -100; policy accept;
		tcp dport 8080 redirect to :80
	}

	chain in {
		type filter hook input priority filter; policy accept;
		tcp dport 22 reject with tcp reset
		udp dport != 53 reject
	}
}
"""
