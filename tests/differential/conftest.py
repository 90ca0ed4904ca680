"""Differential tests: the kernel and the model on the same traffic.

Tests marked `kernel` run specs on the real kernel (root, real network namespaces) and are
skipped with a clear reason otherwise; the rest re-judge recorded bundles and need no root.
"""

from __future__ import annotations

import os

import pytest

NOT_ROOT = "differential runs need root: they build network namespaces and load rules"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here + os.sep) and item.get_closest_marker("kernel") \
                and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason=NOT_ROOT))
