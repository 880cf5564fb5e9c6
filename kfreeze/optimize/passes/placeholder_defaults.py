"""Flags take their inference values; other PlaceholderWithDefaults their defaults."""

from __future__ import annotations

import numpy as np

from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import copy
from kfreeze.optimize.training import training_flags
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


def placeholder_defaults(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """A PlaceholderWithDefault that is not an input takes its default, and a training
    flag (see ``training_flags``) its inference value, whatever its default.

    TF1 graphs switch batch norm and dropout with ``is_training`` / ``keep_prob``
    flags; as constants they fold, so the training branches vanish and dropout
    masks become all ones (``remove_dropout``).
    """
    out = copy(graph)
    keep = set(ctx.input_nodes)
    flags = {k: v for k, v in training_flags(out).items() if k not in keep}
    for node in out.node:
        if node.name in flags:
            dtype = tf.as_dtype(node.attr["dtype"].type)
            value = tf.make_tensor_proto(np.asarray(flags[node.name], dtype=dtype.as_numpy_dtype))
            node.op = "Const"
            del node.input[:]
            node.ClearField("attr")
            node.attr["dtype"].type = dtype.as_datatype_enum
            node.attr["value"].tensor.CopyFrom(value)
        elif node.op == "PlaceholderWithDefault" and node.name not in keep:
            dtype = node.attr["dtype"].type
            node.op = "Identity"
            node.ClearField("attr")
            node.attr["T"].type = dtype
    return out
