"""Tests for kfreeze/optimize/context.py."""

from __future__ import annotations

import pytest

from kfreeze.optimize import Context, InputSpec


def test_context_rejects_an_unknown_precision():
    with pytest.raises(ValueError, match="precision"):
        Context((InputSpec("x"),), ("out",), precision="int4")
