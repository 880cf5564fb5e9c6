"""The optimization passes: pure ``(GraphDef, Context) -> GraphDef`` functions.

TransformGraph and Grappler do the folding. The hand-written passes do what
neither does: cutting at a non-placeholder tensor with a chosen dtype,
resolving ``PlaceholderWithDefault`` flags, and giving Keras 3's dynamic
Flatten (Shape/StridedSlice/Pack) a constant shape, which also lets OpenCV load it.
"""

from __future__ import annotations

import re

from kfreeze import graphio
from kfreeze.errors import KfreezeError
from kfreeze.nodes import split_tensor
from kfreeze.optimize.context import Context, placeholder_name
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2, node_def_pb2
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.framework import op_def_registry
from tensorflow.python.grappler import tf_optimizer
from tensorflow.python.util import _pywrap_transform_graph

# Grappler optimizers that keep graphs portable: no '_Fused*' ops (remap) and no
# NCHW rewrites (layout), which TF C++ on CPU and OpenCV cannot run.
GRAPPLER_OPTIMIZERS = ("constfold", "arithmetic", "dependency", "pruning", "function", "loop")


def _copy(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    return out


def _import(graph: graph_pb2.GraphDef) -> tf.Graph:
    g = tf.Graph()
    with g.as_default():
        try:
            tf.graph_util.import_graph_def(graph, name="")
        except (ValueError, tf.errors.OpError) as e:
            raise KfreezeError("graph", f"TensorFlow cannot import it ({str(e).splitlines()[0][:200]})",
                               "check that it was written by a compatible TensorFlow") from None
    return g


def _import_light(graph: graph_pb2.GraphDef) -> tf.Graph:
    """``_import`` for passes that need only dtypes and static shapes: large constants come
    in as placeholders of their shape, so no weights are copied (ResNet50: 0.05 s, not 0.5 s)."""
    from kfreeze.optimize.rewrites import light_graph
    return _import(light_graph(graph))


def _retarget(graph: graph_pb2.GraphDef, old: str, new: str, skip: str = "") -> None:
    """Point every data input that reads tensor ``old`` at ``new``, in place."""
    node, port = split_tensor(old)
    for n in graph.node:
        if n.name == skip:
            continue
        for i, inp in enumerate(n.input):
            if not inp.startswith("^") and split_tensor(inp) == (node, port):
                n.input[i] = new


def cut_inputs(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Each configured input tensor becomes a Placeholder of the configured dtype and shape.

    For a tf.data or queue input (``IteratorGetNext``) the producing node is
    replaced; its upstream pipeline then feeds nothing and ``strip_unused``
    drops it. A dtype other than the tensor's own gets a Cast after the placeholder.
    A fixed batch may be cut to another one (an Estimator's [100, 28, 28, 1] to
    [1, 28, 28, 1]), as TransformGraph's strip_unused_nodes(shape=...) does; the
    other dimensions must fit.
    """
    g = _import_light(graph)
    out = _copy(graph)
    rebatched = []
    for spec in ctx.inputs:
        node, port = split_tensor(spec.name)
        tensor = g.get_tensor_by_name(f"{node}:{port}")
        graph_dtype = tensor.dtype.base_dtype
        dtype = tf.as_dtype(spec.dtype) if spec.dtype else graph_dtype
        shape = tf.TensorShape(None if spec.shape is None else [None if d in (None, -1) else d for d in spec.shape]) \
            if spec.shape is not None else tensor.shape
        if spec.shape is not None and tensor.shape.rank is not None and not _fits(tensor.shape, shape):
            raise KfreezeError(f"input '{spec.name}'", f"input_shape {list(spec.shape)} does not fit the graph's "
                               f"shape {tensor.shape.as_list()}",
                               f"give a shape of rank {tensor.shape.rank} that matches the known dimensions")
        name = placeholder_name(spec.name)
        if name != node and any(n.name == name for n in out.node):
            raise KfreezeError(f"input '{spec.name}'", f"its placeholder would be named '{name}', "
                               "which another node of the graph already has",
                               f"cut at a tensor of another node, or at '{node}' itself")
        placeholder = node_def_pb2.NodeDef(name=name, op="Placeholder")
        placeholder.attr["dtype"].type = dtype.as_datatype_enum
        placeholder.attr["shape"].shape.CopyFrom(shape.as_proto())
        feeds = name
        extra = []
        if dtype != graph_dtype:
            cast = node_def_pb2.NodeDef(name=f"{name}/cast", op="Cast", input=[name])
            cast.attr["SrcT"].type = dtype.as_datatype_enum
            cast.attr["DstT"].type = graph_dtype.as_datatype_enum
            cast.attr["Truncate"].b = False
            extra.append(cast)
            feeds = cast.name
        replaced = False
        for i, n in enumerate(out.node):
            if n.name == name:  # the cut node keeps its place and name
                out.node[i].CopyFrom(placeholder)
                replaced = True
        if not replaced:
            out.node.insert(0, placeholder)
        for n in extra:
            out.node.append(n)
        _retarget(out, f"{node}:{port}", feeds, skip=feeds)
        if spec.shape is not None and tensor.shape.rank and shape.rank and tensor.shape[0] is not None \
                and shape[0] != tensor.shape[0]:
            rebatched.append((spec, tensor.shape))
    if rebatched:  # shapes recorded at save time (add_shapes=True) still say the old batch
        for n in out.node:
            if "_output_shapes" in n.attr:
                del n.attr["_output_shapes"]
    if rebatched:
        _check_rebatch(out, rebatched)
    return out


def _importable(graph: graph_pb2.GraphDef):
    """None when TF imports ``graph`` (shape inference included), else the error."""
    from kfreeze.optimize.rewrites import light_graph
    try:
        with tf.Graph().as_default():
            tf.graph_util.import_graph_def(light_graph(graph), name="")
    except (ValueError, tf.errors.OpError) as e:
        return e
    return None


def _check_rebatch(graph: graph_pb2.GraphDef, rebatched) -> None:
    """A cut to another batch must not meet a node that fixes the old one (a Reshape to [100, ...]).
    Failures that the old batch has too are left to the passes that explain them."""
    import re as re_
    e = _importable(graph)
    if e is None:
        return
    original = _copy(graph)
    by_name = {n.name: n for n in original.node}
    for spec, graph_shape in rebatched:
        by_name[placeholder_name(spec.name)].attr["shape"].shape.CopyFrom(graph_shape.as_proto())
    if _importable(original) is not None:
        return
    for spec, graph_shape in rebatched[:1]:
        found = re_.search(r"\{\{node ([^}]+)\}\}", str(e))
        where = f"node '{found.group(1)}'" if found else "a node downstream"
        raise KfreezeError(f"input '{spec.name}'", f"input_shape {list(spec.shape)} changes the graph's fixed batch "
                           f"{graph_shape[0]}, but {where} needs that batch ({str(e).splitlines()[0][:120]})",
                           f"cut after {where} (its output becomes the input, at any batch), or keep the batch: "
                           f"input_shape {graph_shape.as_list()}") from None


RANDOM_OPS = re.compile(r"^(Random\w*|Stateless\w*(Random|Multinomial|TruncatedNormal|Shuffle)\w*|Stateful\w*|"
                        r"Multinomial|TruncatedNormal|ParameterizedTruncatedNormal|NonDeterministicInts|"
                        r"Rng\w*|\w*CandidateSampler|RandomIndexShuffle)$")
_UNIFORM = re.compile(r"^(RandomUniform|StatelessRandomUniform\w*|StatefulUniform)$")
_ARITH = {"Identity", "Snapshot", "Sub", "Add", "AddV2", "Mul", "RealDiv", "Div", "Cast", "Neg", "Reciprocal"}


def is_random_op(op: str) -> bool:
    """Ops whose value changes from run to run: none may stay in an inference graph."""
    return bool(RANDOM_OPS.match(op))


def _scalar_flag(node) -> bool:
    if node.op not in ("Placeholder", "PlaceholderWithDefault"):
        return False
    shape = node.attr["shape"].shape
    return shape.unknown_rank or len(shape.dim) == 0


def _evaluate(by_name, tensor: str, flag: str, value: float, depth: int = 0):
    """The scalar value of ``tensor`` when placeholder ``flag`` is ``value``: a small
    evaluator for the arithmetic between a keep_prob/rate placeholder and the dropout mask."""
    import numpy as np
    node = by_name.get(split_tensor(tensor)[0])
    if node is None or depth > 12:
        return None
    if node.name == flag:
        return value
    if node.op == "Const":
        v = tf.make_ndarray(node.attr["value"].tensor)
        return float(v.reshape(())) if v.size == 1 else None
    if node.op not in _ARITH:
        return None
    args = [_evaluate(by_name, i, flag, value, depth + 1) for i in node.input if not i.startswith("^")]
    if any(a is None for a in args) or not args:
        return None
    with np.errstate(all="ignore"):
        a = args[0]
        b = args[1] if len(args) > 1 else None
        return {"Identity": a, "Snapshot": a, "Cast": a, "Neg": -a if a is not None else None,
                "Reciprocal": (1.0 / a) if a else None, "Sub": a - b if b is not None else None,
                "Add": a + b if b is not None else None, "AddV2": a + b if b is not None else None,
                "Mul": a * b if b is not None else None,
                "RealDiv": a / b if b else None, "Div": a / b if b else None}[node.op]


def _from_uniform(by_name, tensor: str, depth: int = 0) -> bool:
    """``tensor`` is a uniform [0, 1) draw, possibly through Identity (or * 1, + 0 forms)."""
    node = by_name.get(split_tensor(tensor)[0])
    if node is None or depth > 4:
        return False
    if _UNIFORM.match(node.op):
        return True
    return node.op in ("Identity", "Mul", "Add", "AddV2") and any(
        _from_uniform(by_name, i, depth + 1) for i in node.input if not i.startswith("^"))


def training_flags(graph: graph_pb2.GraphDef) -> dict:
    """Placeholders that switch a graph into training mode, with their inference values,
    found by what they do rather than by name or default:

    - a float feeding the threshold of a dropout mask ``GreaterEqual(uniform, rate)``
      (tf.nn.dropout, TF >= 1.13) or the ``Floor(keep_prob + uniform)`` mask (TF < 1.13):
      the value (0 or 1) at which the mask keeps everything: rate 0, keep_prob 1;
    - a bool that selects, through a ``tf.cond`` Switch, a branch with a random op
      (Keras' learning phase, ``is_training`` around dropout), or a bool placeholder
      without a default that is a cond predicate (Keras 2's ``keras_learning_phase``): False.

    Their defaults do not matter: a ``placeholder_with_default(0.5)`` keep_prob is a
    training default, and a plain ``Placeholder`` has none.
    """
    by_name = {n.name: n for n in graph.node}
    flags = {n.name: n for n in graph.node if _scalar_flag(n)}
    if not flags:
        return {}
    found: dict = {}
    floats = [n for n in flags.values() if tf.as_dtype(n.attr["dtype"].type).is_floating]
    for node in graph.node:
        if node.op == "GreaterEqual" and len(node.input) >= 2 and _from_uniform(by_name, node.input[0]):
            target, want = node.input[1], 0.0
        elif node.op == "Floor" and node.input:
            add = by_name.get(split_tensor(node.input[0])[0])
            if add is None or add.op not in ("Add", "AddV2") or len(add.input) != 2:
                continue
            a, b = add.input
            if _from_uniform(by_name, a):
                target = b
            elif _from_uniform(by_name, b):
                target = a
            else:
                continue
            want = 1.0
        else:
            continue
        for flag in floats:
            for value in (0.0, 1.0):
                got = _evaluate(by_name, target, flag.name, value)
                if got is not None and got == want:
                    found[flag.name] = value
                    break
    bools = [n for n in flags.values() if tf.as_dtype(n.attr["dtype"].type) == tf.bool and n.name not in found]
    if bools:
        consumers: dict[str, list[tuple[str, int]]] = {}
        for n in graph.node:
            for inp in n.input:
                src, port = split_tensor(inp)
                consumers.setdefault(src, []).append((n.name, -1 if inp.startswith("^") else port))
        for flag in bools:
            if _gates_random(flag.name, by_name, consumers):
                found[flag.name] = False
            elif flag.op == "Placeholder" and any(
                    by_name[user].op in ("Switch", "RefSwitch") and split_tensor(by_name[user].input[1])[0] == flag.name
                    for user, port in consumers.get(flag.name, []) if port >= 0):
                # Keras 2's learning phase: a bool placeholder without a default, the predicate
                # of the train/test conds (batch norm, dropout); left alone it must be fed.
                found[flag.name] = False
    return found


def _gates_random(flag: str, by_name, consumers) -> bool:
    """A random op runs only when ``flag`` is true: it lies in a Switch's true branch."""
    seen, stack = set(), [(flag, False)]
    while stack:
        name, true_branch = stack.pop()
        if (name, true_branch) in seen:
            continue
        seen.add((name, true_branch))
        node = by_name[name]
        if true_branch and is_random_op(node.op):
            return True
        if node.op in ("Merge", "RefMerge"):
            continue  # past the cond: both branches meet again
        for user, port in consumers.get(name, []):
            if node.op in ("Switch", "RefSwitch"):
                if port == 1:
                    stack.append((user, True))
                elif port == 0:
                    continue
                else:
                    stack.append((user, true_branch))
            else:
                stack.append((user, true_branch))
    return False


def _fits(graph_shape, shape) -> bool:
    """``shape`` fits the tensor's static shape, the batch (first) dimension aside."""
    if shape.rank is None or graph_shape.rank != shape.rank:
        return graph_shape.is_compatible_with(shape)
    return graph_shape[1:].is_compatible_with(shape[1:])


def placeholder_defaults(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """A PlaceholderWithDefault that is not an input takes its default, and a training
    flag (see ``training_flags``) its inference value, whatever its default.

    TF1 graphs switch batch norm and dropout with ``is_training`` / ``keep_prob``
    flags; as constants they fold, so the training branches vanish and dropout
    masks become all ones (``remove_dropout``).
    """
    import numpy as np
    out = _copy(graph)
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


def strip_unused(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Keep only what the outputs need; every input must still feed an output."""
    names = {n.name for n in graph.node}
    missing = [o for o in ctx.output_nodes if o not in names]
    if missing:
        raise KfreezeError(f"output '{missing[0]}'", "is not in the graph", "check 'outputs' in params.yaml")
    out = graph if _needed(graph, ctx.output_nodes) == names else \
        tf.compat.v1.graph_util.extract_sub_graph(graph, ctx.output_nodes)
    kept = {n.name for n in out.node}
    for spec, name in zip(ctx.inputs, ctx.input_nodes):
        if name not in kept:
            raise KfreezeError(f"input '{spec.name}'", f"does not feed any of the outputs {list(ctx.outputs)} "
                               "(it is downstream of them or on another branch)",
                               "choose an input upstream of the outputs ('kfreeze nodes' lists candidates)")
        node, port = split_tensor(spec.name)
        # A placeholder has one output: anything still reading '<node>:j' reads the cut-away node.
        other_ports = sorted({inp for n in out.node for inp in n.input
                              if not inp.startswith("^") and split_tensor(inp)[0] == node and split_tensor(inp)[1] != port})
        if (node != name and node in kept) or other_ports:
            tensors = ", ".join(other_ports) or f"{node}:N"
            raise KfreezeError(f"input '{spec.name}'", f"the outputs also read other tensors of '{node}' "
                               f"({tensors}), so the graph cannot be cut there", "add those tensors to 'inputs'")
    return out


def _needed(graph: graph_pb2.GraphDef, outputs: list[str]) -> set[str]:
    """The nodes ``outputs`` depend on (data and control), as extract_sub_graph keeps them."""
    inputs = {n.name: [i.lstrip("^").split(":")[0] for i in n.input] for n in graph.node}
    seen, todo = set(), [o for o in outputs if o in inputs]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(i for i in inputs.get(name, ()) if i not in seen)
    return seen


def static_reshape(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Give a Reshape a constant target shape when inference knows all but one dimension.

    Keras 3 Flatten computes its shape at run time (Shape -> StridedSlice -> Pack)
    because the batch is dynamic; constant folding cannot fold that, and OpenCV
    cannot import it. ``[-1, 1600]`` is the same reshape as a constant.
    """
    if not any(n.op == "Reshape" for n in graph.node):
        return graph
    g = _import_light(graph)
    out = _copy(graph)
    new_nodes = []
    for node in out.node:
        if node.op != "Reshape":
            continue
        shape_src = g.get_operation_by_name(split_tensor(node.input[1])[0])
        if shape_src.type == "Const":
            continue
        shape = g.get_operation_by_name(node.name).outputs[0].shape
        if shape.rank is None or sum(d is None for d in shape.as_list()) > 1:
            continue
        const = tf.make_tensor_proto([-1 if d is None else d for d in shape.as_list()],
                                     dtype=g.get_operation_by_name(node.name).get_attr("Tshape"))
        new = node_def_pb2.NodeDef(name=f"{node.name}/static_shape", op="Const")
        new.attr["dtype"].type = const.dtype
        new.attr["value"].tensor.CopyFrom(const)
        new_nodes.append(new)
        node.input[1] = new.name
    out.node.extend(new_nodes)
    return tf.compat.v1.graph_util.extract_sub_graph(out, ctx.output_nodes) if new_nodes else out


def transform_graph(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """TensorFlow's TransformGraph folds FusedBatchNorm (V1) and BatchNormWithGlobalNormalization
    straight after a conv into its weights. V2/V3 are left to ``batch_norm_to_affine``.

    Runs only when such a batch norm is present: on other graphs it has nothing to
    fold, and its ``fold_batch_norms`` rejects a Conv -> Mul whose constant is
    [1, 1, 1, C] (EfficientNet), which ``fold_affine`` folds instead."""
    if not any(n.op in ("FusedBatchNorm", "BatchNormWithGlobalNormalization") for n in graph.node):
        return graph
    return _transform(graph, ctx, "fold_batch_norms fold_old_batch_norms")


_FUSED_BN = {"FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3"}


def batch_norm_to_affine(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """An inference FusedBatchNorm{,V2,V3} with constant statistics becomes Mul + BiasAdd.

    TransformGraph only folds FusedBatchNorm V1, and only straight after a conv;
    TF1 code since 1.14 emits V3, often after a BiasAdd. As a per-channel affine
    ``y = x * s + (offset - mean * s)``, ``s = scale / sqrt(var + eps)``, it is
    then folded into the conv or matmul by ``fold_affine``. Training-mode
    batch norms and those whose batch statistics are read are left alone.
    """
    import numpy as np

    out = _copy(graph)
    consts = _consts(out)
    read_stats = {split_tensor(i)[0] for n in out.node for i in n.input
                  if not i.startswith("^") and split_tensor(i)[1] > 0}
    new_nodes = []
    for node in out.node:
        if node.op not in _FUSED_BN or node.attr["is_training"].b or node.name in read_stats:
            continue
        if node.attr["data_format"].s not in (b"", b"NHWC"):
            continue
        params_ = [consts.get(split_tensor(i)[0]) for i in node.input[1:5]]
        if any(p is None for p in params_):
            continue
        scale, offset, mean, var = (np.asarray(p, np.float64) for p in params_)
        factor = scale / np.sqrt(var + node.attr["epsilon"].f)
        dtype = tf.as_dtype(node.attr["T"].type).as_numpy_dtype
        s_const = _make_const(f"{node.name}/scale", factor.astype(dtype))
        b_const = _make_const(f"{node.name}/shift", (offset - mean * factor).astype(dtype))
        mul = node_def_pb2.NodeDef(name=f"{node.name}/mul", op="Mul", input=[node.input[0], s_const.name])
        mul.attr["T"].type = node.attr["T"].type
        new_nodes += [s_const, b_const, mul]
        _to_bias_add(node, mul.name, b_const.name, dtype)
    out.node.extend(new_nodes)
    return out


def sort_by_execution_order(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Execution order with ties broken by name, so equal graphs serialize to equal bytes.

    Not TransformGraph's sort_by_execution_order: it keeps ties in input order,
    and the input order is not stable across processes (see graphio.canonical_order).
    """
    return graphio.canonical_order(graph)


def _transform(graph: graph_pb2.GraphDef, ctx: Context, transforms: str) -> graph_pb2.GraphDef:
    data = _pywrap_transform_graph.TransformGraphWithStringInputs(
        graph.SerializeToString(deterministic=True), ",".join(ctx.input_nodes).encode(),
        ",".join(ctx.output_nodes).encode(), transforms.encode())
    out = graph_pb2.GraphDef()
    out.ParseFromString(data)
    return out


def grappler(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Offline Grappler: constant folding (batch norm into conv weights), arithmetic
    simplification, identity and dead-node removal."""
    g = _import_light(graph)  # only for export_meta_graph's collections: the graph_def is ``graph``
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph, graph=g)
    meta.collection_def["train_op"].node_list.value.extend(ctx.output_nodes)
    config = config_pb2.ConfigProto()
    rewrite = config.graph_options.rewrite_options
    rewrite.optimizers.extend(GRAPPLER_OPTIMIZERS)
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.TWO
    rewrite.min_graph_nodes = -1
    out = tf_optimizer.OptimizeGraph(config, meta)
    del out.library.function[:]  # inlined by the function optimizer; none may remain referenced
    return out


def check_portable(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Only ops registered in stock TensorFlow, no Grappler-internal '_' ops, and no random
    op: a RandomUniform left from training-mode dropout gives another answer on every call."""
    bad = sorted({n.op for n in graph.node if n.op.startswith("_") or op_def_registry.get(n.op) is None})
    if bad:
        raise KfreezeError("optimized graph", f"contains non-portable ops {', '.join(bad)}",
                           "report this model; kfreeze must not emit them")
    random = sorted(f"{n.name} ({n.op})" for n in graph.node if is_random_op(n.op))
    if random:
        raise KfreezeError("optimized graph", f"contains random ops, so it answers differently on every call: "
                           f"{', '.join(random[:5])}{' ...' if len(random) > 5 else ''}",
                           "cut the graph after the training-only part, or make its dropout/noise rate a "
                           "placeholder (kfreeze sets those to their inference values)")
    return graph


# -- fold_affine ---------------------------------------------------------------

_LINEAR = {"Conv2D", "MatMul", "DepthwiseConv2dNative", "Conv3D"}
_ADD = {"Add", "AddV2", "BiasAdd"}


def _consts(graph: graph_pb2.GraphDef) -> dict[str, "np.ndarray"]:
    return {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in graph.node if n.op == "Const"}


def _consumers(graph: graph_pb2.GraphDef) -> dict[str, int]:
    count: dict[str, int] = {}
    for n in graph.node:
        for inp in n.input:
            name = split_tensor(inp)[0]
            count[name] = count.get(name, 0) + 1
    return count


def _channel_vector(value, channels: int):
    """A per-output-channel vector from a scalar, [C] or [1, .., 1, C] constant; else None."""
    import numpy as np

    value = np.asarray(value)
    if value.size == 1:
        return np.full([channels], value.reshape(()), dtype=value.dtype)
    if value.shape[-1] == channels and value.size == channels:
        return value.reshape([channels])
    return None


def _make_const(name: str, value) -> node_def_pb2.NodeDef:
    node = node_def_pb2.NodeDef(name=name, op="Const")
    proto = tf.make_tensor_proto(value)
    node.attr["dtype"].type = proto.dtype
    node.attr["value"].tensor.CopyFrom(proto)
    return node


def _out_channels(node: node_def_pb2.NodeDef, weights) -> int | None:
    if node.op == "MatMul":
        if node.attr["transpose_a"].b:
            return None
        return weights.shape[0] if node.attr["transpose_b"].b else weights.shape[1]
    if node.attr["data_format"].s not in (b"", b"NHWC", b"NDHWC"):
        return None
    if node.op == "DepthwiseConv2dNative":
        return weights.shape[2] * weights.shape[3]
    return weights.shape[-1]


def _scale_weights(node: node_def_pb2.NodeDef, weights, scale):
    if node.op == "MatMul" and node.attr["transpose_b"].b:
        return weights * scale[:, None]
    if node.op == "DepthwiseConv2dNative":
        return weights * scale.reshape(weights.shape[2], weights.shape[3])
    return weights * scale


def fold_affine(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Fold constant per-channel Mul and Add after a conv or matmul into its weights and bias.

    Keras 3 emits a conv bias as BiasAdd and inference batch norm as Mul + AddV2
    after it; Grappler only folds a Mul that directly follows the conv, so with a
    bias in between the batch norm stays. Rewrites, repeated to a fixed point:
      Mul(Linear(x, W), s)          -> Linear(x, W*s)
      Mul(BiasAdd(y, b), s)         -> BiasAdd(Mul(y, s), b*s)
      Add(BiasAdd(y, b), c)         -> BiasAdd(y, b+c)
      Add(Linear(x, W), c)          -> BiasAdd(Linear(x, W), c)
    each only when the inner node has no other consumer, and for NHWC layouts.
    """
    out = _copy(graph)
    keep = set(ctx.output_nodes)
    changed = True
    while changed:
        changed = False
        out = tf.compat.v1.graph_util.extract_sub_graph(out, ctx.output_nodes)  # dead nodes are no consumers
        consts = _const_values(out)  # decoded on use: a sweep touches few weights
        users = _consumers(out)
        by_name = {n.name: n for n in out.node}
        names = set(by_name)
        touched: set[str] = set()  # rewritten in this sweep: their neighbours wait for the next one
        for node in list(out.node):
            if node.op not in ({"Mul"} | _ADD) or len(node.input) != 2 or node.input[0].startswith("^"):
                continue
            a, b = (split_tensor(i)[0] for i in node.input)
            if b not in consts and a in consts and node.op != "BiasAdd":
                a, b = b, a
            inner = by_name.get(a)
            if b not in consts or inner is None or users.get(a, 0) != 1 or a in keep or split_tensor(node.input[0])[1]:
                continue
            if node.name in touched or a in touched:
                continue
            if node.op == "BiasAdd" and node.attr["data_format"].s not in (b"", b"NHWC"):
                continue
            if inner.op in _LINEAR and node.op != "BiasAdd" and split_tensor(inner.input[1])[0] in consts:
                weights = consts[split_tensor(inner.input[1])[0]]
                channels = _out_channels(inner, weights)
                vec = _channel_vector(consts[b], channels) if channels else None
                if vec is None or vec.dtype != weights.dtype:
                    continue
                if node.op == "Mul":
                    wname = _unique_name(names, f"{node.name}/folded_weights")
                    out.node.append(_make_const(wname, _scale_weights(inner, weights, vec)))
                    new = node_def_pb2.NodeDef()
                    new.CopyFrom(inner)
                    new.name = node.name
                    new.input[1] = wname
                    node.CopyFrom(new)
                else:
                    bname = _unique_name(names, f"{node.name}/folded_bias")
                    out.node.append(_make_const(bname, vec))
                    _to_bias_add(node, a, bname, weights.dtype)
                changed = True
                touched.update((node.name, a))
                continue
            if inner.op == "BiasAdd" and inner.attr["data_format"].s in (b"", b"NHWC") \
                    and split_tensor(inner.input[1])[0] in consts:
                bias = consts[split_tensor(inner.input[1])[0]]
                vec = _channel_vector(consts[b], bias.shape[0])
                if vec is None or vec.dtype != bias.dtype:
                    continue
                bname = _unique_name(names, f"{node.name}/folded_bias")
                if node.op == "Mul":
                    # Mul(BiasAdd(y, b), s) -> BiasAdd(Mul(y, s), b*s): the Mul then meets the conv.
                    out.node.append(_make_const(bname, bias * vec))
                    sname = _unique_name(names, f"{node.name}/scale")
                    out.node.append(_make_const(sname, vec))
                    mul = node_def_pb2.NodeDef(name=_unique_name(names, f"{node.name}/scaled"), op="Mul",
                                               input=[inner.input[0], sname])
                    mul.attr["T"].type = node.attr["T"].type
                    out.node.append(mul)
                    _to_bias_add(node, mul.name, bname, bias.dtype)
                else:
                    out.node.append(_make_const(bname, bias + vec))
                    _to_bias_add(node, inner.input[0], bname, bias.dtype)
                changed = True
                touched.update((node.name, a))
                continue
    return tf.compat.v1.graph_util.extract_sub_graph(out, ctx.output_nodes)


def _unique_name(names: set[str], base: str) -> str:
    from kfreeze.optimize.rewrites import _unique_name as unique
    return unique(names, base)


def _const_values(graph: graph_pb2.GraphDef):
    from kfreeze.optimize.rewrites import _const_values as lazy
    return lazy(graph)


def _to_bias_add(node: node_def_pb2.NodeDef, value: str, bias: str, dtype) -> None:
    name = node.name
    node.Clear()
    node.name, node.op = name, "BiasAdd"
    node.input.extend([value, bias])
    node.attr["T"].type = tf.as_dtype(dtype).as_datatype_enum
    node.attr["data_format"].s = b"NHWC"


# -- remove_dropout ------------------------------------------------------------

def _bypass(graph: graph_pb2.GraphDef, node: node_def_pb2.NodeDef, source: str, keep: set[str]) -> None:
    """Make ``node`` disappear in favour of tensor ``source``; an output keeps its name as Identity."""
    if node.name in keep:
        dtype = node.attr["T"].type or node.attr["DstT"].type
        node.Clear()
        node.name, node.op = node.name, "Identity"
        node.input.append(source)
        node.attr["T"].type = dtype
        return
    _retarget(graph, node.name, source)


def remove_dropout(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Dropout becomes identity, as it is at inference, whatever its (constant) rate.

    ``placeholder_defaults`` has set rate/keep_prob placeholders to 0/1; Grappler
    folds the scaling but cannot fold the random mask, because RandomUniform is
    not a constant. Recognised forms, with ``rate`` and ``keep`` constants:
      TF >= 1.13:  SelectV2(GreaterEqual(uniform, rate), x * 1/(1 - rate), 0)   -> x
                   x * 1/(1 - rate) * Cast(GreaterEqual(uniform, rate))         -> x
      TF <  1.13:  x / keep * Floor(keep + uniform)                             -> x
    A mask in another form stays, and ``check_portable`` then refuses the graph.
    """
    out = _copy(graph)
    consts = _consts(out)
    by_name = {n.name: n for n in out.node}
    keep = set(ctx.output_nodes)

    def const_value(name):
        value = consts.get(split_tensor(name)[0])
        return None if value is None or value.size != 1 else float(value.reshape(()))

    def is_uniform(name):
        return _from_uniform(by_name, name)

    def unscale(tensor: str, factor: float):
        """``tensor`` without dropout's 1/keep scaling: x for x * factor or x / (1/factor)."""
        if abs(factor - 1.0) <= 1e-6:
            return tensor
        node = by_name.get(split_tensor(tensor)[0])
        if node is None or len(node.input) != 2 or split_tensor(tensor)[1]:
            return None
        a, b = node.input
        if node.op == "Mul":
            for x, c in ((a, b), (b, a)):
                value = const_value(c)
                if value is not None and abs(value - factor) <= 1e-5 * abs(factor):
                    return x
        if node.op in ("RealDiv", "Div"):
            value = const_value(b)
            if value and abs(1.0 / value - factor) <= 1e-5 * abs(factor):
                return a
        return None

    masks: dict[str, float] = {}   # boolean keep-masks -> their scale 1/keep
    ones: dict[str, float] = {}    # float 0/1 masks -> their scale
    for node in out.node:
        if node.op == "GreaterEqual" and is_uniform(node.input[0]):
            rate = const_value(node.input[1])
            if rate is not None and rate < 1.0:
                masks[node.name] = 1.0 / (1.0 - max(rate, 0.0))
        elif node.op == "Floor":
            add = by_name.get(split_tensor(node.input[0])[0])
            if add is not None and add.op in ("Add", "AddV2") and len(add.input) == 2:
                a, b = add.input
                k = const_value(b) if is_uniform(a) else const_value(a) if is_uniform(b) else None
                if k is not None and 0.0 < k <= 1.0:
                    ones[node.name] = 1.0 / k
    changed = True
    while changed:  # Cast(mask) is a 0/1 mask with the same scale
        changed = False
        for node in out.node:
            src = split_tensor(node.input[0])[0] if node.input else None
            if node.op == "Cast" and src in masks and node.name not in ones:
                ones[node.name] = masks[src]
                changed = True
    if not (ones or masks):
        return out
    for node in list(out.node):
        srcs = [split_tensor(i)[0] for i in node.input if not i.startswith("^")]
        if node.op in ("SelectV2", "Select") and srcs and srcs[0] in masks:
            source = unscale(node.input[1], masks[srcs[0]])
        elif node.op == "Mul" and len(srcs) == 2 and (srcs[0] in ones or srcs[1] in ones):
            mask, other = (srcs[1], node.input[0]) if srcs[1] in ones else (srcs[0], node.input[1])
            source = unscale(other, ones[mask])
        else:
            continue
        if source is not None:
            _bypass(out, node, source, keep)
    return tf.compat.v1.graph_util.extract_sub_graph(out, ctx.output_nodes)


# -- frame_constants ---------------------------------------------------------------

def frame_constants(graph: graph_pb2.GraphDef, ctx: Context) -> graph_pb2.GraphDef:
    """Put each new constant that a v1 while loop (an RNN's) reads inside the loop's frame.

    A node in a loop runs in the loop's frame; TensorFlow puts a constant there
    by a control edge from a node of the loop (Grappler and the While lowering do
    so). A constant made by a hand-written pass (a folded bias, a static reshape
    shape) has no inputs, so it lands in the root frame and the session refuses
    the graph ("has inputs from different frames"). Such a constant gets a control
    edge from a loop node its consumer reads; one read both inside and outside
    a loop, or by two loops, gets a copy per frame.
    """
    in_loops = graphio.loop_nodes(graph)
    if not in_loops:
        return graph
    out = _copy(graph)
    by_name = {n.name: n for n in out.node}
    names = set(by_name)
    # const name -> {anchor or None (outside): [(consumer, input index)]}
    uses: dict[str, dict] = {}
    for node in out.node:
        for i, inp in enumerate(node.input):
            src = split_tensor(inp)[0]
            const = by_name.get(src)
            if const is None or const.op != "Const" or const.input:
                continue
            anchor = None
            if node.name in in_loops and node.op not in ("Enter", "RefEnter"):
                anchor = next((split_tensor(j)[0] for j in node.input if split_tensor(j)[0] in in_loops), None)
            uses.setdefault(src, {}).setdefault(anchor, []).append((node, i))
    new_nodes = []
    for src in sorted(uses):
        groups = uses[src]
        anchors = sorted(a for a in groups if a is not None)
        if not anchors:
            continue
        if len(groups) == 1:
            by_name[src].input.append("^" + anchors[0])
            continue
        for anchor in anchors:
            copy = node_def_pb2.NodeDef()
            copy.CopyFrom(by_name[src])
            copy.name = _unique_name(names, f"{src}/in_loop")
            names.add(copy.name)
            copy.input.append("^" + anchor)
            new_nodes.append(copy)
            for node, i in groups[anchor]:
                inp = node.input[i]
                node.input[i] = ("^" if inp.startswith("^") else "") + copy.name + inp.lstrip("^")[len(src):]
    out.node.extend(new_nodes)
    return out
