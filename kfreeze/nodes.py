"""Node names: parse, check with closest-name suggestions, and discover likely inputs/outputs."""

from __future__ import annotations

import collections
import difflib
import re
from dataclasses import dataclass

from kfreeze.tfenv import tf  # noqa: F401  (quiet TF import first)
from tensorflow.core.framework import graph_pb2, types_pb2

from kfreeze.errors import KfreezeError

TRAINING_SCOPES = re.compile(
    r"(^|/)(save(_\d+)?|gradients(_\d+)?|train|training|optimizer|"
    r"Adam|AdamW|Adamax|Nadam|Momentum|RMSProp|GradientDescent|ProximalGradientDescent|Adagrad|AdagradDA|"
    r"ProximalAdagrad|Ftrl|Adadelta|SGD|summaries|summary|global_step|report_uninitialized|init|"
    r"Initializer|[^/]*loss(es)?|metrics?|accuracy|ExponentialMovingAverage)(_\d+)?(/|$)",
    re.IGNORECASE,
)
INPUT_OPS = {"Placeholder": 3, "PlaceholderV2": 3, "IteratorGetNext": 2, "QueueDequeueV2": 1,
             "QueueDequeueManyV2": 1, "QueueDequeueUpToV2": 1, "QueueDequeue": 1, "QueueDequeueMany": 1}
OUTPUT_OPS = {"Softmax": 5, "Sigmoid": 4, "ArgMax": 3, "Identity": 3, "BiasAdd": 2, "Add": 1, "AddV2": 1,
              "MatMul": 1, "Tanh": 1, "Reshape": 1, "Squeeze": 1, "Relu": 0, "Conv2D": 1}
SKIP_SINK_OPS = {"NoOp", "Assign", "AssignVariableOp", "SaveV2", "RestoreV2", "Const", "VariableV2",
                 "VarHandleOp", "ScalarSummary", "HistogramSummary", "MergeSummary", "Print", "Assert",
                 "PrintV2", "MakeIterator", "IteratorV2", "AnonymousIteratorV3", "VarIsInitializedOp"}


_NOT_OUTPUT_OP = re.compile(r"^(Assign|ResourceApply|Apply|Scatter|ResourceScatter|Save|Restore)|Summary|Dataset|"
                            r"Iterator(?!GetNext)|Queue(Enqueue|Close)|Variable|VarHandle")


def _never_output(op: str) -> bool:
    """State updates, savers, summaries and input-pipeline plumbing are never inference outputs."""
    return op in SKIP_SINK_OPS or bool(_NOT_OUTPUT_OP.search(op))


# What TensorFlow accepts as a node name (its importer refuses anything else), with an optional :k.
TENSOR_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/>]*(:[0-9]+)?\Z")


def split_tensor(name: str) -> tuple[str, int]:
    """'node:1' -> ('node', 1); 'node' -> ('node', 0)."""
    node, _, index = name.partition(":")
    node = node.lstrip("^")
    return node, int(index) if index.isdigit() else 0


def closest(name: str, names, n: int = 5) -> list[str]:
    names = list(names)
    found = difflib.get_close_matches(name, names, n=n, cutoff=0.4)
    if len(found) < n:  # also offer names that share the last path component
        tail = name.rsplit("/", 1)[-1].lower()
        found += [x for x in names if tail and tail in x.lower() and x not in found][: n - len(found)]
    return found


def require(graph: graph_pb2.GraphDef, names: list[str], what: str, where: str) -> None:
    """Fail with the closest real names when a configured node is not in the graph, or has no such output."""
    by_name = {n.name: n for n in graph.node}
    for name in names:
        if not isinstance(name, str) or not TENSOR_NAME.match(name):
            raise KfreezeError(where, f"{what} {name!r} is no tensor name" + (
                " ('^' marks a control input, which carries no value)" if str(name).startswith("^") else ""),
                "give a node name, or node:k for its k-th output (e.g. 'x' or 'x:0')")
        node, port = split_tensor(name)
        if node not in by_name:
            near = closest(node, sorted(by_name))
            hint = f"closest names: {', '.join(near)}" if near else "run 'kfreeze nodes' on the graph to list candidates"
            raise KfreezeError(where, f"{what} node '{name}' is not in the graph", hint)
        count = _output_count(by_name[node])
        if count is not None and port >= count:
            raise KfreezeError(where, f"{what} '{name}': node '{node}' ({by_name[node].op}) has "
                               f"{count} output{'s' if count != 1 else ''}",
                               f"use '{node}'" + (f" or '{node}:0' ... '{node}:{count - 1}'" if count > 1 else ""))


def _output_count(node) -> int | None:
    """How many outputs ``node`` has, from its op's definition; None when that cannot be told."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return None
    count = 0
    for arg in op_def.output_arg:
        if arg.number_attr:
            if arg.number_attr not in node.attr:
                return None
            count += node.attr[arg.number_attr].i
        elif arg.type_list_attr:
            if arg.type_list_attr not in node.attr:
                return None
            count += len(node.attr[arg.type_list_attr].list.type)
        else:
            count += 1
    return count


def require_upstream(graph: graph_pb2.GraphDef, inputs: list[str], outputs: list[str], where: str) -> None:
    """Every input must feed an output: not downstream of them, not on another branch."""
    need: set[str] = set()
    by_name = {n.name: n for n in graph.node}
    stack = [split_tensor(o)[0] for o in outputs]
    while stack:
        name = stack.pop()
        if name not in need and name in by_name:
            need.add(name)
            stack.extend(split_tensor(i)[0] for i in by_name[name].input)
    for name in inputs:
        if split_tensor(name)[0] not in need:
            raise KfreezeError(where, f"input '{name}' does not feed any of the outputs {outputs} "
                               "(it is downstream of them or on another branch)",
                               "choose an input upstream of the outputs ('kfreeze nodes' lists candidates)")


@dataclass(frozen=True)
class Candidate:
    name: str
    op: str
    dtype: str
    shape: str
    score: float
    port: int | None = None  # one output of a multi-output source (an iterator or queue dequeue)


def _dtype(node) -> str:
    for key in ("dtype", "T", "output_types", "component_types"):
        if key in node.attr:
            attr = node.attr[key]
            types = list(attr.list.type) if attr.HasField("list") else [attr.type]
            return ",".join(types_pb2.DataType.Name(t).replace("DT_", "").lower() for t in types)
    return "?"


def _shape(node) -> str:
    for key in ("shape", "output_shapes", "_output_shapes", "shapes"):
        if key in node.attr:
            attr = node.attr[key]
            protos = list(attr.list.shape) if attr.HasField("list") else [attr.shape]
            if protos:
                dims = [("?" if p.unknown_rank else "[" + ",".join("?" if d.size < 0 else str(d.size) for d in p.dim) + "]")
                        for p in protos]
                return ",".join(dims)
    return "?"


def _downstream(graph: graph_pb2.GraphDef, sources: set[str]) -> set[str]:
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for inp in node.input:
            if not inp.startswith("^"):
                consumers[split_tensor(inp)[0]].append(node.name)
    seen, stack = set(), list(sources)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(consumers.get(name, []))
    return seen


def discover(graph: graph_pb2.GraphDef) -> tuple[list[Candidate], list[Candidate]]:
    """Likely inputs and outputs, most likely first.

    Inputs are feedable sources (placeholders, tf.data and queue outputs) that
    reach an inference output. Outputs are sinks computed from the inputs:
    that leaves out variable initializers and reads and the tf.data plumbing
    upstream of the iterator; saver, summary, loss, gradient and optimizer
    scopes are left out by name.
    """
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for inp in node.input:
            consumers[split_tensor(inp)[0]].append(node.name)
    by_name = {n.name: n for n in graph.node}

    def training(name: str) -> bool:
        return bool(TRAINING_SCOPES.search(name))

    sources = {n.name for n in graph.node if n.op in INPUT_OPS and not training(n.name)}
    fed = _downstream(graph, sources) if sources else {n.name for n in graph.node}
    outputs = []
    for node in graph.node:
        if _never_output(node.op) or training(node.name) or not node.input or node.name not in fed:
            continue
        if node.name in sources:
            continue
        users = consumers.get(node.name, [])
        live = [c for c in users if not training(c) and not _never_output(by_name[c].op)]
        if live or (users and all(_never_output(by_name[c].op) for c in users)):
            continue  # feeds the model, or only feeds state updates (moving averages)
        score = OUTPUT_OPS.get(node.op, 0.5)
        if node.op == "Identity" and "/" not in node.name:
            score += 2  # a deliberately named output, e.g. kfreeze's 'probs'
        if "/" not in node.name:
            score += 0.5
        outputs.append(Candidate(node.name, node.op, _dtype(node), _shape(node), score))

    # Inputs must feed the inference outputs found above, not through another input:
    # the placeholders that feed an initializable iterator are not the model's inputs.
    reach = set()
    stack = [c.name for c in outputs]
    while stack:
        name = stack.pop()
        if name in reach or name not in by_name:
            continue
        reach.add(name)
        if name not in sources:
            stack.extend(split_tensor(i)[0] for i in by_name[name].input)
    used_ports = collections.defaultdict(set)  # source -> the output ports the model reads
    for name in reach:
        for inp in by_name[name].input:
            src, port = split_tensor(inp)
            if src in sources and not inp.startswith("^"):
                used_ports[src].add(port)
    inputs = []
    for node in graph.node:
        if node.name in sources and node.name in reach:
            score = INPUT_OPS[node.op]
            if node.op.startswith("Placeholder") and _shape(node) in ("[]", "?"):
                score -= 2  # scalar placeholders are flags (is_training, keep_prob), not data
            if node.op in MULTI_OUTPUT_OPS and used_ports.get(node.name):
                inputs.extend(_port_candidates(node, sorted(used_ports[node.name]), score))
                continue
            inputs.append(Candidate(node.name, node.op, _dtype(node), _shape(node), score))
    key = lambda c: (-c.score, c.name)  # noqa: E731
    inputs, outputs = _inferred(graph, inputs), _inferred(graph, outputs)
    return sorted(inputs, key=key), sorted(outputs, key=key)


MULTI_OUTPUT_OPS = {"IteratorGetNext", "QueueDequeueV2", "QueueDequeueManyV2", "QueueDequeueUpToV2", "QueueDequeue",
                    "QueueDequeueMany", "QueueDequeueUpTo"}


def _port_candidates(node, ports: list[int], score: float) -> list[Candidate]:
    """One candidate per output the model reads: an Estimator's numpy_input_fn queue
    dequeues an int64 row index beside the features, and the features are the input.
    Floating tensors of rank >= 2 rank first."""
    dtypes = _dtype(node).split(",")
    shapes = _split_shapes(_shape(node))
    out = []
    for port in ports:
        dtype = dtypes[port] if port < len(dtypes) else "?"
        shape = shapes[port] if port < len(shapes) else "?"
        bonus = (1.0 if dtype.startswith(("float", "half", "bfloat", "double")) else -1.0) + \
            (0.5 if shape.count(",") >= 1 else 0.0)
        name = node.name if port == 0 else f"{node.name}:{port}"
        out.append(Candidate(name, node.op, dtype, shape, score + bonus, port))
    return out


def _split_shapes(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "["
        depth -= ch == "]"
        cur += ch
    return parts + [cur]


def _inferred(graph: graph_pb2.GraphDef, cands: list[Candidate]) -> list[Candidate]:
    """Fill in dtype and shape from TF's shape inference where the node's attrs do not say."""
    if all("?" not in (c.dtype + c.shape) for c in cands):
        return cands
    g = tf.Graph()
    try:
        with g.as_default():
            tf.graph_util.import_graph_def(graph, name="")
    except Exception:  # a graph with ops this TF lacks: keep what the attrs say
        return cands
    out = []
    for c in cands:
        op = g.get_operation_by_name(split_tensor(c.name)[0])
        if c.port is not None:
            t = op.outputs[c.port]
            dtype = t.dtype.name.replace("float32", "float")
            shape = "?" if t.shape.rank is None else "[" + ",".join("?" if d is None else str(d) for d in t.shape.as_list()) + "]"
            out.append(Candidate(c.name, c.op, dtype, shape, c.score, c.port))
            continue
        dtype = ",".join(t.dtype.name.replace("float32", "float") for t in op.outputs) or c.dtype
        shape = ",".join("?" if t.shape.rank is None else
                         "[" + ",".join("?" if d is None else str(d) for d in t.shape.as_list()) + "]"
                         for t in op.outputs) or c.shape
        out.append(Candidate(c.name, c.op, dtype, shape, c.score))
    return out


VARIABLE_OPS = ("VariableV2", "VarHandleOp", "Variable")


def listing(graph: graph_pb2.GraphDef, limit: int = 10) -> list[str]:
    """``kfreeze nodes``' lines: the likely inputs and outputs, and on a frozen graph the layer
    name OpenCV dnn gives each output (``-``: none; OpenCV has no layer for a constant or an input)."""
    from kfreeze import opencv_names

    inputs, outputs = discover(graph)
    frozen = not any(n.op in VARIABLE_OPS for n in graph.node)
    lines = []
    for title, cands in (("inputs", inputs), ("outputs", outputs)):
        rows = [f"  {c.name:<40} {c.op:<18} {c.dtype:<10} {c.shape}" for c in cands[:limit]]
        if frozen and title == "outputs" and rows:
            width = max(len(r) for r in rows) + 2
            lines.append(f"{title + ':':<{width}}OpenCV net.forward name")
            lines += [f"{r:<{width}}{opencv_names.layer_name(graph, c.name) or '-'}" for r, c in zip(rows, cands)]
        else:
            lines += [f"{title}:"] + (rows or ["  (none found)"])
    return lines
