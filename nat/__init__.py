"""natlab's reference model of Linux netfilter conntrack + NAT (IPv4).

Pure: values in, values out. Standard library only; no I/O, no clock, no randomness of its own.
Each module names the kernel files and functions it mirrors.
"""
