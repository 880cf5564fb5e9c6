"""Execution order, ties broken by name: equal graphs serialize to equal bytes."""

from __future__ import annotations

from kfreeze import graphio
from kfreeze.optimize.context import Context
from tensorflow.core.framework import graph_pb2


def sort_by_execution_order(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Execution order with ties broken by name, so equal graphs serialize to equal bytes.

    Not TransformGraph's sort_by_execution_order: it keeps ties in input order,
    and the input order is not stable across processes (see graphio.canonical_order).
    """
    return graphio.canonical_order(graph)
