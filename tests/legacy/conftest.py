"""The ``save`` fixture: a tf_keras model written as a legacy user has it."""

import pytest

from legacy_helpers import Saved


@pytest.fixture
def save(tmp_path):
    return lambda model: Saved(model, tmp_path)
