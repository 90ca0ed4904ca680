"""Shared fixtures for tests on the real kernel (root, real network namespaces).

Every test collected under tests/kernel is marked `kernel`, and skipped with a clear reason
when not run as root. Networks come from `topologies.mininet_net.running`, so each carries
its own run id and is torn down (and checked) when its scope ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from topologies.mininet_net import Network, running
from topologies.presets import preset

KERNEL_DIR = Path(__file__).parent
NOT_ROOT = "kernel tests need root: they create network namespaces, veths and bridges"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if KERNEL_DIR in item.path.parents:
            item.add_marker(pytest.mark.kernel)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT))


@pytest.fixture(scope="module")
def home_net() -> Iterator[Network]:
    """The `home` preset, up for the whole test module (laptop - gateway - desktop)."""
    with running(preset("home")) as net:
        yield net


@pytest.fixture(scope="module")
def lan_net() -> Iterator[Network]:
    """The `lan` preset, up for the whole test module (client1..4 bridged - gateway - server)."""
    with running(preset("lan")) as net:
        yield net


def _wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def wait_until() -> Callable[..., None]:
    """`wait_until(predicate, timeout=5.0, what="...")`: poll with a deadline, never sleep
    blindly; fails the test naming `what`."""
    return _wait_until
