"""Fixtures the optimizer tests share, built once per session."""

from __future__ import annotations

import numpy as np
import pytest

from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def rng7():
    """The seed the tests of the rewrites that follow Grappler were written with."""
    return np.random.default_rng(7)


@pytest.fixture(scope="session")
def gru_frozen():
    """A frozen GRU (a v1 while loop with its bias added inside the loop), and its Keras outputs."""
    from kfreeze import export, freeze
    from kfreeze.keras_io import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((5, 3), name="seq")
    model = keras.Model(inp, keras.layers.GRU(4, name="gru")(inp), name="g")
    cell = model.get_layer("gru").cell
    cell.bias.assign(np.random.default_rng(0).normal(0, 0.5, cell.bias.shape).astype("float32"))
    ex = export.export_model(model)
    values = {k: np.asarray(v) for k, v in ex.values.items()}
    graph = graph_pb2.GraphDef()
    graph.CopyFrom(ex.graph)
    for node in graph.node:  # the checkpoint's values as constants, as freeze makes them
        if node.name in values:
            node.op = "Const"
            node.ClearField("attr")
            node.attr["dtype"].type = tf.as_dtype(values[node.name].dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[node.name]))
    frozen = tf.compat.v1.graph_util.extract_sub_graph(graph, ["gru"])
    x = np.random.default_rng(1).random((2, 5, 3), np.float32)
    return frozen, x, np.asarray(model(x))
