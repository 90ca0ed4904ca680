"""Fixtures for the whole test suite.

`host_isolation` (tests/conftest_isolation.py) is autouse and session-scoped: it fails the
session when the root network namespace's rules, netfilter/forwarding sysctls or conntrack
entries in natlab's address ranges differ after the last test from before the first.

Hypothesis runs without its per-example deadline and its "too slow" health check: on two
shared cores a loaded moment made correct tests fail (seen three times in one day); a property
that is wrong still fails, whatever the machine's speed.
"""

from hypothesis import HealthCheck, settings

from tests.conftest_isolation import host_isolation

settings.register_profile("natlab", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("natlab")

__all__ = ["host_isolation"]
