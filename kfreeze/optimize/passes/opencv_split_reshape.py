"""``opencv: true``: a Reshape from a 2-D tensor straight into a repeat chain goes through the 4-D image.

``Dense -> Reshape((H, W, C)) -> UpSampling2D`` (a generator, a decoder): Grappler merges the
Reshape with the ExpandDims that starts Keras' repeat chain into one Reshape from ``[N, H*W*C]``
to ``[N, H, 1, W, C]``. Then neither ``opencv_dense_reshape`` (which looks for the 4-D image) nor
``opencv_upsampling`` (which needs the chain to start from it) recognises its part, and the Tile
is refused. Splitting the Reshape back into ``[N, H, W, C]`` then the 5-D shape is the same
tensor in TF (a reshape of a reshape is one reshape) and gives each pass its form.
"""

from __future__ import annotations

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context
from kfreeze.optimize.graph import const_values, consumers, copy, make_const, shape_of, static_shapes, unique_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2


def opencv_split_reshape(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """``Reshape(x, [N, a, b, c, d])`` with ``x`` 2-D, read only by a ``Tile``, and a unit axis among
    a..d becomes ``Reshape(Reshape(x, s4), s5)``, ``s4`` the target without that unit axis (the first
    from axis 2, else axis 1)."""
    by_name = {n.name: n for n in graph.node}
    consts = const_values(graph)
    users = consumers(graph)
    shapes = None
    todo = []
    for node in graph.node:
        if node.op != "Reshape" or len(node.input) != 2:
            continue
        found = users.get(node.name, [])
        if len(found) != 1 or found[0][0].op != "Tile":
            continue
        shape_name = split_tensor(node.input[1])[0]
        if shape_name not in consts or by_name[shape_name].op != "Const":
            continue
        target = [int(v) for v in np.asarray(consts[shape_name]).reshape(-1)]
        if len(target) != 5 or min(target[1:]) < 1:
            continue
        if shapes is None:
            shapes = static_shapes(graph)
        src = shape_of(shapes, node.input[0])
        if src is None or len(src) != 2:
            continue
        units = [k for k in range(2, 5) if target[k] == 1] or [k for k in range(1, 5) if target[k] == 1]
        if not units:
            continue
        todo.append((node.name, target[:units[0]] + target[units[0] + 1:]))
    if not todo:
        return graph
    out = copy(graph)
    names = {n.name for n in out.node}
    nodes = {n.name: n for n in out.node}
    for name, four in todo:
        node = nodes[name]
        shape = make_const(unique_name(names, f"{name}/opencv_image_shape"), np.asarray(four, np.int32))
        shape.attr["value"].tensor.ClearField("int_val")
        shape.attr["value"].tensor.tensor_content = np.asarray(four, np.int32).tobytes()
        image = node_def_pb2.NodeDef(name=unique_name(names, f"{name}/opencv_image"), op="Reshape",
                                     input=[node.input[0], shape.name])
        image.attr["T"].CopyFrom(node.attr["T"])
        image.attr["Tshape"].type = tf.int32.as_datatype_enum
        node.input[0] = image.name
        out.node.extend([shape, image])
    return out
