"""Graph + checkpoint -> one GraphDef of constants, with TensorFlow's own convert_variables_to_constants."""

from __future__ import annotations

import functools
import glob
from dataclasses import dataclass
from pathlib import Path

from kfreeze.errors import KfreezeError
from kfreeze.graphio import PROTOBUF_LIMIT
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

VARIABLE_OPS = {"VariableV2", "Variable", "VarHandleOp", "AutoReloadVariable"}
LEFTOVER_OPS = VARIABLE_OPS | {"ReadVariableOp", "Assign", "AssignVariableOp", "SaveV2", "RestoreV2",
                                "SaveSlices", "RestoreSlice", "VarIsInitializedOp"}


@dataclass
class Frozen:
    graph: graph_pb2.GraphDef
    converted: int  # variables turned into constants


def resolve_checkpoint(path: str | Path) -> str:
    """A checkpoint prefix; a directory means its latest checkpoint.

    The prefix, whatever the state file says, and every file of it must stay
    inside the checkpoint's own folder after symlinks: TensorFlow would happily
    read an absolute or ``../`` path the state file names.
    """
    path = Path(path)
    if path.is_dir():
        state = tf.train.get_checkpoint_state(str(path))
        named = state.model_checkpoint_path if state is not None else ""  # TF joins a relative one to path
        real = Path(named).resolve() if named else None
        if real is not None and path.resolve() not in real.parents:
            raise KfreezeError(path / "checkpoint", f"the state file names '{named}', outside {path}/",
                               "give the checkpoint prefix itself, or fix the state file")
        latest = tf.train.latest_checkpoint(str(path))
        if latest is None:
            raise KfreezeError(path, "directory holds no checkpoint (no 'checkpoint' state file or index)",
                               "give the checkpoint prefix itself, such as model.ckpt-2000")
        _check_files_inside(Path(latest), path)
        return latest
    if path.is_file() and not Path(str(path) + ".index").is_file():  # a V1 checkpoint: one file, the prefix
        from kfreeze.params import check_inside
        check_inside(path, path.parent, str(path))
        _check_files_inside(path, path.parent)
        return str(path)
    if not Path(str(path) + ".index").is_file():
        raise KfreezeError(path, "checkpoint not found (no .index file with this prefix)",
                           "give the prefix, e.g. model.ckpt-2000 for model.ckpt-2000.index")
    _check_files_inside(path, path.parent)
    return str(path)


def _check_files_inside(prefix: Path, folder: Path) -> None:
    from kfreeze.params import check_inside

    for file in sorted(prefix.parent.glob(glob.escape(prefix.name) + ".*")):
        check_inside(file, folder, str(prefix))


def freeze(graph: graph_pb2.GraphDef, checkpoint: str | Path | None, outputs: list[str], where: str) -> Frozen:
    """Restore every variable the outputs need from ``checkpoint`` (a prefix, or a directory
    meaning its latest checkpoint) and make it a Const. A graph given frozen (``checkpoint``
    None) needs none: it is kept as it is, pruned to what the outputs need."""
    variables = {n.name for n in graph.node if n.op in VARIABLE_OPS}
    needed = _needed_variables(graph, outputs) & variables
    shapes = _variable_shapes(graph)
    check_size(graph, needed, shapes, where)
    if not needed:  # nothing to restore: a weightless model needs no checkpoint
        sub = tf.compat.v1.graph_util.extract_sub_graph(graph, [o.split(":")[0] for o in outputs])
        for node in sub.node:
            node.ClearField("device")
        return Frozen(sub, 0)
    if checkpoint is None:
        example = sorted(needed)[0]
        raise KfreezeError(where, f"the outputs need {len(needed)} variable(s) (e.g. '{example}') and no checkpoint "
                           "is given", "give the checkpoint saved with this graph, or a graph frozen already "
                           "(all weights constants)")
    checkpoint = resolve_checkpoint(checkpoint)
    reader = _reader(checkpoint)
    stored = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    # A variable of unknown shape in the graph is sized by what the checkpoint declares for it,
    # before any value is read (a 129-byte index can declare a sparse 2 GiB shard).
    check_size(graph, needed, {**{k: list(v) for k, v in stored.items() if k in needed}, **{
        k: v for k, v in shapes.items() if v is not None}}, where)
    parts = partitions(shapes, stored)
    for name in sorted(needed):
        if name not in stored and name not in parts:
            raise KfreezeError(checkpoint, f"checkpoint has no value for variable '{name}' of the graph",
                               "use the checkpoint written with this graph")
        key = name if name in stored else parts[name][0]
        graph_dtype = next((n.attr["dtype"].type for n in graph.node if n.name == name), None)
        if graph_dtype and dtypes[key].as_datatype_enum != graph_dtype:
            raise KfreezeError(checkpoint, f"variable '{name}' is {dtypes[key].name} in the checkpoint but "
                               f"{tf.as_dtype(graph_dtype).name} in the graph", "use the checkpoint written with this graph")
        if name in stored and shapes.get(name) is not None and list(stored[name]) != shapes[name]:
            raise KfreezeError(checkpoint, f"variable '{name}' has shape {list(stored[name])} in the checkpoint "
                               f"but {shapes[name]} in the graph", "use the checkpoint written with this graph")
    try:
        frozen = _restore_and_convert(graph, reader, needed, outputs, parts)
    except (tf.errors.OpError, ValueError, TypeError, IndexError, OSError) as e:  # IndexError: a cut .data file
        message = tf_reason(e)
        raise KfreezeError(checkpoint, f"cannot restore the weights for {where} ({message})",
                           "the checkpoint files are damaged or belong to another graph; re-save them") from None
    left = sorted({n.op for n in frozen.node} & LEFTOVER_OPS)
    if left:
        raise KfreezeError(where, f"frozen graph still holds {', '.join(left)} nodes",
                           "report this graph; it uses a variable type kfreeze cannot freeze")
    converted = len({n.name for n in frozen.node if n.op == "Const"} & needed)
    return Frozen(frozen, converted)


def partitions(shapes: dict[str, list[int] | None], stored: dict) -> dict[str, tuple[str, tuple]]:
    """Partitioned variables' parts: 'v/part_k' (a graph variable, not a checkpoint key) -> ('v', the
    slice of the stored 'v' it holds). A Saver stores a partitioned variable whole under its own name;
    the parts' offsets are not in the GraphDef, so they are the parts' shapes summed in k order along
    the one axis they split (0 or more parts whose shapes do not add up to the whole: none)."""
    import re

    groups: dict[str, list[tuple[int, str]]] = {}
    for name in shapes:
        m = re.fullmatch(r"(.+)/part_(\d+)", name)
        if m and name not in stored and m.group(1) in stored:
            groups.setdefault(m.group(1), []).append((int(m.group(2)), name))
    found = {}
    for base, members in groups.items():
        members.sort()
        whole = list(stored[base])
        dims = [shapes[n] for _, n in members]
        if [k for k, _ in members] != list(range(len(members))) or any(d is None or len(d) != len(whole) for d in dims):
            continue
        axes = [a for a in range(len(whole)) if any(d[a] != whole[a] for d in dims)] or [0]
        if len(axes) != 1 or sum(d[axes[0]] for d in dims) != whole[axes[0]] \
                or any(d[a] != whole[a] for d in dims for a in range(len(whole)) if a != axes[0]):
            continue
        start = 0
        for (_, name), d in zip(members, dims):
            index = [slice(None)] * len(whole)
            index[axes[0]] = slice(start, start + d[axes[0]])
            found[name] = (base, tuple(index))
            start += d[axes[0]]
    return found


def restore_ops(variables: dict, reader, parts: dict) -> tuple[list, dict]:
    """In the current graph, one assign per variable (name -> its op, VariableV2 or VarHandleOp)
    from a placeholder, and the feeds: each placeholder -> a call that reads the checkpoint's value
    (``run_restore`` reads one at a time: all values read up front held every weight twice)."""
    assigns, feeds = [], {}
    with tf.name_scope("kfreeze_restore"):
        for name, op in sorted(variables.items()):
            if op.type == "VarHandleOp":
                value = tf.compat.v1.placeholder(op.get_attr("dtype"))
                assigns.append(tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=value))
            else:
                value = tf.compat.v1.placeholder(op.outputs[0].dtype.base_dtype)
                assigns.append(tf.compat.v1.assign(op.outputs[0], value, validate_shape=False))
            feeds[value] = functools.partial(checkpoint_value, reader, name, parts)
    return assigns, feeds


def run_restore(sess, assigns: list, feeds: dict) -> None:
    """``restore_ops``' assigns, each with its value read just before it runs."""
    for assign, (placeholder, read) in zip(assigns, feeds.items()):
        sess.run(assign, {placeholder: read()})


def checkpoint_value(reader, name: str, parts: dict):
    """Variable ``name``'s value: its checkpoint key, or its slice of the partitioned variable's."""
    if name in parts:
        key, index = parts[name]
        return reader.get_tensor(key)[index]
    return reader.get_tensor(name)


def _restore_and_convert(graph: graph_pb2.GraphDef, reader, needed: set[str], outputs: list[str],
                         parts: dict | None = None) -> graph_pb2.GraphDef:
    """The needed variables, and only they, set from the checkpoint; then TF's own
    ``convert_variables_to_constants`` turns them into Consts.

    Not ``freeze_graph``: it restores every checkpoint key that names a tensor of the graph, so a
    key naming a ``ReadVariableOp`` whose handle waits on a WriteFile ran the WriteFile, on a path
    the op policy (outputs and variables) never walks. Its Saver also fails on resource variables
    (``VarHandleOp``: "tuple index out of range"). Here each needed variable gets one assign from a
    fed value read with the checkpoint reader: nothing but the variables and the outputs' ancestors
    ever runs, and VariableV2 and VarHandleOp are both handled.
    """
    graph = graph_pb2.GraphDef.FromString(graph.SerializeToString())
    for node in graph.node:
        node.ClearField("device")
    # TF's converter reads a resource variable's value from '<name>/Read/ReadVariableOp', as
    # tf.compat.v1 names it; a graph written another way gets that reader (the outputs do not use it).
    names = {n.name for n in graph.node}
    for node in [n for n in graph.node if n.op == "VarHandleOp" and n.name in needed]:
        if f"{node.name}/Read/ReadVariableOp" not in names:
            read = graph.node.add(name=f"{node.name}/Read/ReadVariableOp", op="ReadVariableOp", input=[node.name])
            read.attr["dtype"].CopyFrom(node.attr["dtype"])
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        assigns, feeds = restore_ops({name: g.get_operation_by_name(name) for name in needed}, reader, parts or {})
        config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
        with tf.compat.v1.Session(graph=g, config=config) as sess:
            run_restore(sess, assigns, feeds)
            return tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph, [o.split(":")[0] for o in outputs], variable_names_whitelist=sorted(needed))


def check_size(graph: graph_pb2.GraphDef, needed: set[str], shapes: dict, where: str) -> None:
    """Refuse, before reading any weights, a freeze whose constants exceed protobuf's 2 GB."""
    import numpy as np

    dtypes = {n.name: n.attr["dtype"].type for n in graph.node if n.name in needed}
    total = graph.ByteSize()
    for name in needed:
        if shapes.get(name) is not None:
            total += int(np.prod(shapes[name], dtype=np.int64)) * tf.as_dtype(dtypes[name]).size
    if total > PROTOBUF_LIMIT:
        raise KfreezeError(where, f"the frozen graph would hold {total / 2**30:.2f} GiB of constants, over protobuf's "
                           "2 GiB limit for one GraphDef", "freeze a smaller model, or store weights as float16 "
                           "(precision float16) if that brings it under the limit; a SavedModel has no such limit")


_NOISE = ("File ", "Detected at node", "Node:", "[[", "Original stack trace", "Graph execution error",
          "Restoring from checkpoint failed", "Original error:")


def tf_reason(error: Exception) -> str:
    """The one informative line of a TensorFlow error, without its stack of op definitions."""
    lines = [ln.strip() for ln in str(error).split("Original error:")[-1].splitlines()]
    useful = [ln for ln in lines if ln and not ln.startswith(_NOISE)]
    return " ".join((useful[0] if useful else type(error).__name__).split())[:300]


def _variable_shapes(graph: graph_pb2.GraphDef) -> dict[str, list[int] | None]:
    shapes = {}
    for node in graph.node:
        if node.op in VARIABLE_OPS and "shape" in node.attr and not node.attr["shape"].shape.unknown_rank:
            shapes[node.name] = [d.size for d in node.attr["shape"].shape.dim]
    return shapes


def _reader(checkpoint: str):
    try:
        return tf.compat.v1.train.NewCheckpointReader(checkpoint)
    except (tf.errors.OpError, ValueError) as e:
        raise KfreezeError(checkpoint, f"checkpoint cannot be read ({str(e).splitlines()[0][:200]})",
                           "the .index or .data file is damaged or missing; re-save it") from None


def _needed_variables(graph: graph_pb2.GraphDef, outputs: list[str]) -> set[str]:
    sub = tf.compat.v1.graph_util.extract_sub_graph(graph, [o.split(":")[0] for o in outputs])
    return {n.name for n in sub.node}
