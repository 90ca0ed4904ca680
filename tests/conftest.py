"""Fixtures for the whole test suite.

`host_isolation` (tests/conftest_isolation.py) is autouse and session-scoped: it fails the
session when the root network namespace's rules, netfilter/forwarding sysctls or conntrack
entries in natlab's address ranges differ after the last test from before the first.
"""

from tests.conftest_isolation import host_isolation

__all__ = ["host_isolation"]
