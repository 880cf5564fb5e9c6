"""The peers tier: every test here is marked ``peers`` (make test-peers)."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/peers/" in str(item.fspath):
            item.add_marker(pytest.mark.peers)
