"""Read and write GraphDefs with clear errors, deterministically and atomically."""

from __future__ import annotations

import collections
import json
from pathlib import Path

from kfreeze.tfenv import tf  # noqa: F401  (quiet TF import first)
from google.protobuf import message, text_format
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from kfreeze import atomic
from kfreeze.errors import KfreezeError

GRAPH_SUFFIXES = (".pb", ".pbtxt", ".meta")


def check_file(path: str | Path, what: str, fix: str = "") -> Path:
    path = Path(path)
    if path.is_dir():
        raise KfreezeError(path, f"{what} is a directory, expected a file", fix or "point to the file inside it")
    if not path.exists():
        raise KfreezeError(path, f"{what} not found", fix or "check the path")
    if path.stat().st_size == 0:
        raise KfreezeError(path, f"{what} is empty", "re-create or re-download the file")
    return path


def read_graph(path: str | Path) -> graph_pb2.GraphDef:
    """A GraphDef from a binary or text GraphDef, or a ``.meta`` MetaGraphDef.

    Binary or text is decided by the bytes (``kfreeze.sources``), not the suffix: a binary
    graph named ``.pbtxt`` or ``.bin`` reads as what it is. The suffix only names the error.
    """
    from kfreeze import sources

    path = check_file(path, "graph file")
    if path.stat().st_size > PROTOBUF_LIMIT:  # before reading it: no GraphDef can be this large
        raise KfreezeError(path, f"{path.stat().st_size / 2**30:.2f} GiB, over protobuf's 2 GiB limit for one GraphDef",
                           "the file is no single GraphDef; for a larger model give a SavedModel folder")
    data = path.read_bytes()
    suffix = path.suffix.lower()
    is_text = sources.is_text_graphdef(data[:4096]) or (suffix == ".pbtxt" and not sources.is_binary_graphdef(data))
    if suffix not in GRAPH_SUFFIXES and not is_text and not sources.is_binary_graphdef(data):
        raise KfreezeError(path, f"unknown graph file type '{suffix}' (neither a binary nor a text GraphDef)",
                           "use a .pb, .pbtxt or .meta file")
    try:
        if is_text:
            return _checked(text_format.Parse(data.decode("utf-8"), graph_pb2.GraphDef()), path)
        if suffix == ".meta":
            meta = meta_graph_pb2.MetaGraphDef()
            meta.ParseFromString(data)
            graph = meta.graph_def
            if not graph.node and sources.is_binary_graphdef(data):  # a GraphDef named .meta
                graph = graph_pb2.GraphDef()
                graph.ParseFromString(data)
        else:
            graph = graph_pb2.GraphDef()
            graph.ParseFromString(data)
    except (text_format.ParseError, UnicodeDecodeError) as e:
        raise KfreezeError(path, f"not a text GraphDef ({str(e).splitlines()[0][:120]})",
                           "fix the syntax, or re-export the graph") from None
    except (message.DecodeError, RuntimeError, ValueError) as e:
        raise KfreezeError(path, f"not a binary {'MetaGraphDef' if suffix == '.meta' else 'GraphDef'} ({e})",
                           "the file is damaged or of another type; re-export it") from None
    return _checked(graph, path)


def _checked(graph: graph_pb2.GraphDef, path: Path) -> graph_pb2.GraphDef:
    if not graph.node:
        raise KfreezeError(path, "graph has no nodes", "the file is damaged or of another type; re-export it")
    check_references(graph, path)
    check_constants(graph, path)
    return graph


def check_references(graph: graph_pb2.GraphDef, where) -> None:
    """Every input must name a node of the graph: a damaged file often parses but dangles."""
    names = {n.name for n in graph.node}
    if len(names) != len(graph.node):
        seen: set[str] = set()
        dup = next(n.name for n in graph.node if n.name in seen or seen.add(n.name))
        raise KfreezeError(where, f"two nodes are named '{dup}'", "the file is damaged; re-export it")
    for node in graph.node:
        for inp in node.input:
            src = inp.lstrip("^").split(":")[0]
            if src not in names:
                raise KfreezeError(where, f"node '{node.name}' reads '{src}', which is not in the graph",
                                   "the file is damaged or incomplete; re-export it")


PROTOBUF_LIMIT = 2**31 - 1  # a serialized GraphDef (any protobuf message) cannot be larger


def check_constants(graph: graph_pb2.GraphDef, where) -> None:
    """Refuse constants that declare more than a GraphDef can hold, before anything expands them.

    A Const may store one value for a whole shape (a splat): 8 KB of graph declaring a
    [60000, 60000] float tensor becomes 13 GiB once folded, densified or run. A real frozen
    graph holds its weights in the file, so their declared bytes stay under protobuf's 2 GiB.
    """
    total = 0
    for node in graph.node:
        if node.op != "Const" or "value" not in node.attr:
            continue
        tensor = node.attr["value"].tensor
        count = 1
        for dim in tensor.tensor_shape.dim:
            count *= max(dim.size, 0)
            if count > PROTOBUF_LIMIT:
                break
        size = tf.as_dtype(tensor.dtype).size if tensor.dtype not in (0, 7, 20, 21) else 1  # string, resource, variant
        total += count * size
        if total > PROTOBUF_LIMIT:
            raise KfreezeError(where, f"constant '{node.name}' declares {count * size / 2**30:.1f} GiB "
                               f"(shape {[d.size for d in tensor.tensor_shape.dim]}); the constants together "
                               "would exceed the 2 GiB a GraphDef can hold", "re-export the graph; kfreeze does "
                               "not expand constants that large")


def graph_bytes(graph: graph_pb2.GraphDef) -> bytes:
    size = graph.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise KfreezeError("graph", f"{size / 2**30:.2f} GiB, over protobuf's 2 GiB limit for one GraphDef",
                           "freeze a smaller model or store weights as float16")
    return graph.SerializeToString(deterministic=True)


def write_graph(graph: graph_pb2.GraphDef, path: str | Path) -> None:
    """Binary for ``.pb``, text for ``.pbtxt``; same graph, same bytes."""
    path = Path(path)
    if path.suffix == ".pbtxt":
        atomic.write_text(path, text_format.MessageToString(graph))
    else:
        atomic.write_bytes(path, graph_bytes(graph))


def op_histogram(graph: graph_pb2.GraphDef) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op for n in graph.node).items()))


def write_json(path: str | Path, data) -> None:
    atomic.write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path):
    path = check_file(path, "JSON file", "run the stage that writes it (dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise KfreezeError(path, f"not valid JSON ({e})", "re-run the stage that writes it") from None


def loop_nodes(graph: graph_pb2.GraphDef) -> set[str]:
    """The nodes inside v1 while loops (convert_variables_to_constants_v2 lowers While to
    Enter/Merge/Switch/NextIteration/Exit): everything downstream of an Enter, up to its Exit."""
    users: dict[str, list[str]] = {}
    for node in graph.node:
        for inp in node.input:
            users.setdefault(inp.lstrip("^").split(":")[0], []).append(node.name)
    ops = {n.name: n.op for n in graph.node}
    todo = [n.name for n in graph.node if n.op in ("Enter", "RefEnter")]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if ops.get(name) not in ("Exit", "RefExit"):
            todo.extend(users.get(name, ()))
    return seen


def canonical_order(graph: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """The nodes in execution order, ties broken by name.

    TensorFlow's own converters emit nodes in an order that depends on Python's
    hash seed (set iteration in ``convert_variables_to_constants_v2``), and
    TransformGraph's ``sort_by_execution_order`` keeps ties in input order, so
    neither gives the same bytes in every process. Back edges from
    ``NextIteration`` are ignored so while loops sort too.
    """
    import heapq

    nodes = {n.name: n for n in graph.node}
    deps: dict[str, set[str]] = {}
    users: dict[str, list[str]] = {name: [] for name in nodes}
    for node in graph.node:
        found = set()
        for inp in node.input:
            src = inp.lstrip("^").split(":")[0]
            if src in nodes and nodes[src].op != "NextIteration":
                found.add(src)
        deps[node.name] = found
        for src in found:
            users[src].append(node.name)
    ready = [name for name, d in deps.items() if not d]
    heapq.heapify(ready)
    order = []
    while ready:
        name = heapq.heappop(ready)
        order.append(name)
        for user in users[name]:
            deps[user].discard(name)
            if not deps[user]:
                heapq.heappush(ready, user)
    order += sorted(set(nodes) - set(order))  # a cycle TF would reject anyway: keep, deterministically
    out = graph_pb2.GraphDef()
    out.CopyFrom(graph)
    del out.node[:]
    out.node.extend(nodes[name] for name in order)
    return out
