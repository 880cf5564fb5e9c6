"""The layer name OpenCV dnn (4.x) gives the op computing a TF output: the name ``net.forward`` takes.

OpenCV's TF importer (modules/dnn/src/tensorflow/tf_importer.cpp and tf_graph_simplifier.cpp,
checked against opencv-python-headless 4.14) keeps each node's name as its layer name, except:

- it drops ``Identity``, ``Dropout`` and ``PlaceholderWithDefault`` (RemoveIdentityOps);
- it fuses a ``BiasAdd`` into the ``Conv2D``/``DepthwiseConv2dNative``/``Conv3D``/``Conv2DBackpropInput``
  before it when that conv has exactly one BiasAdd consumer, and a ``BiasAdd`` (or, when there is
  none, an ``Add``/``AddV2``: it renames AddV2 to Add first) into the ``MatMul`` before it: the
  layer takes the conv's or MatMul's name;
- a ``Reshape`` to rank 4 adds a permute layer ``<name>/nchw`` after itself (unless the first two
  dimensions are 1 or -1): that permute holds the result in NCHW order, as every 4-D layer does, so
  it is the name to fetch (the layer ``<name>`` holds it in NHWC order).

Pure functions on a GraphDef (no OpenCV, no TensorFlow session): the optimizer uses them to give
every output a layer of its own name, ``kfreeze nodes`` to show the name; verify proves it by
calling ``net.forward`` with it.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.tfenv import tf

DROPPED = ("Identity", "Dropout", "PlaceholderWithDefault")
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative", "Conv3D", "Conv2DBackpropInput")
ADD_OPS = ("Add", "AddV2")
NO_LAYER = ("Const", "Placeholder")


def _consumers(graph, name: str) -> list:
    return [n for n in graph.node for i in n.input if not i.startswith("^") and split_tensor(i)[0] == name]


def fused_into(graph, node, by_name: dict | None = None) -> str | None:
    """The conv or MatMul whose layer OpenCV folds ``node`` (a bias add) into, or None."""
    by_name = by_name if by_name is not None else {n.name: n for n in graph.node}
    if node.op not in ("BiasAdd",) + ADD_OPS or not node.input:
        return None
    src = by_name.get(split_tensor(node.input[0])[0])
    if src is None:
        return None
    users = _consumers(graph, src.name)
    biases = [u for u in users if u.op == "BiasAdd"]
    if src.op in CONV_OPS:
        return src.name if node.op == "BiasAdd" and len(biases) == 1 else None
    if src.op == "MatMul":
        fused = biases or [u for u in users if u.op in ADD_OPS]
        return src.name if len(fused) == 1 and fused[0].name == node.name else None
    return None


def folded(graph, node, by_name: dict | None = None) -> bool:
    """OpenCV has no layer named ``node.name``: it drops the op, or folds it into the layer before."""
    by_name = by_name if by_name is not None else {n.name: n for n in graph.node}
    return node.op in DROPPED or fused_into(graph, node, by_name) is not None


def reshape_permutes(graph, node, by_name: dict | None = None) -> bool:
    """A Reshape to rank 4 (from a constant shape): OpenCV's layer of its name holds the values in
    NHWC order, and the permute '<name>/nchw' after it holds them as NCHW, like every 4-D layer."""
    by_name = by_name if by_name is not None else {n.name: n for n in graph.node}
    if node.op != "Reshape" or len(node.input) < 2:
        return False
    shape = by_name.get(split_tensor(node.input[1])[0])
    if shape is None or shape.op != "Const":
        return False
    dims = np.asarray(tf.make_ndarray(shape.attr["value"].tensor)).reshape(-1)
    return dims.size == 4 and not all(abs(int(d)) == 1 for d in dims[:2])


def layer_name(graph, output: str) -> str | None:
    """The name ``net.forward`` takes for the TF output ``output`` ('node' or 'node:0'); None when
    OpenCV has no layer for it (a constant or an input passed through, or another port than 0)."""
    by_name = {n.name: n for n in graph.node}
    name, port = split_tensor(output)
    while name in by_name and by_name[name].op in DROPPED and by_name[name].input:
        name, port = split_tensor(by_name[name].input[0])
    node = by_name.get(name)
    if node is None or port != 0 or node.op in NO_LAYER:
        return None
    fused = fused_into(graph, node, by_name)
    if fused is not None:
        return fused
    return f"{name}/nchw" if reshape_permutes(graph, node, by_name) else name
