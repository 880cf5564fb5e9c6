"""The peers tier: every test here is marked ``peers`` (make test-peers; make test and make
test-quick leave it out) and ``slow``: each needs a ``kfreeze run`` (10-30 s on 2 cores, two
child processes each importing TensorFlow), shared by a module's tests through a module fixture."""

import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/tests/peers/" in str(item.fspath):
            item.add_marker(pytest.mark.peers)
            item.add_marker(pytest.mark.slow)
