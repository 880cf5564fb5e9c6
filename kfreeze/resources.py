"""Keep a hostile input from exhausting the machine: memory estimates (kfreeze.child bounds the children)."""

from __future__ import annotations

from pathlib import Path

from kfreeze.errors import KfreezeError


def available_memory() -> int:
    """Bytes the machine can still give (MemAvailable), or a huge value when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 2**62


def release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc's malloc_trim).

    A freed copy of a big graph otherwise stays in the process' heap: verify's RSS kept
    every phase's peak (VGG16: the weights read, then Keras', then the session's).
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def activation_bytes(graph) -> tuple[int, str, int]:
    """(sum of every op output's bytes, the largest output's node, its bytes), from static shapes.

    An upper bound of what running the graph once allocates (not every tensor is
    alive at once); unknown dimensions count as 1. Constants are not counted:
    they are already in memory.
    """
    from kfreeze.optimize.graph import light_graph
    from kfreeze.tfenv import tf

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(light_graph(graph), name="")
    total, largest, largest_bytes = 0, "", 0
    for op in g.get_operations():
        if op.type in ("Const", "Placeholder") and op.name not in _placeholders(graph):
            continue
        for t in op.outputs:
            if t.shape.rank is None or t.dtype == tf.resource or t.dtype == tf.variant:
                continue
            n = 1
            for d in t.shape.as_list():
                n *= d if d is not None and d > 0 else 1
            size = n * (t.dtype.size if t.dtype != tf.string else 1)
            total += size
            if size > largest_bytes:
                largest, largest_bytes = op.name, size
    return total, largest, largest_bytes


def _placeholders(graph) -> set[str]:
    return {n.name for n in graph.node if n.op == "Placeholder"}


def check_activations(graph, where: str, param: str) -> None:
    """Refuse a graph whose activations, at the shapes it has now, cannot fit in memory, or one of
    whose ops would compute a tensor over the bound for one (kfreeze.bounds: checked on the GraphDef,
    before the import below, whose shape inference evaluates constant subgraphs)."""
    from kfreeze import bounds
    bounds.check(graph, where)
    try:
        total, largest, largest_bytes = activation_bytes(graph)
    except ValueError as e:  # TF's import infers shapes: a Reshape that this input shape cannot take
        raise KfreezeError(param, f"the graph cannot take this shape ({' '.join(str(e).split())[:300]})",
                           f"check {param} against the shapes the model's inputs take") from None
    free = available_memory()
    if total > free:
        raise KfreezeError(where, f"at this input_shape the activations need about {total / 2**30:.1f} GiB "
                           f"(the largest, '{largest}', {largest_bytes / 2**30:.1f} GiB) and the machine has "
                           f"{free / 2**30:.1f} GiB free", f"use a smaller {param}")
