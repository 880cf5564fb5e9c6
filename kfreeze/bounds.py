"""Computed sizes, bounded before anything computes them (issue 25).

A few kilobytes of graph can ask for gigabytes: ``Range(0, 2**29)``, ``Fill`` whose dims are
``Shape(x) * 20000``, ``Tile`` of ``Tile``, ``MatMul`` of a column by a row, ``DecodePng`` of a
constant 16000x16000 PNG. The declared sizes of constants are bounded when a graph is read
(``graphio.check_constants``); these sizes exist only once something runs the graph, and more than
a session does so: TensorFlow's shape inference evaluates the subgraph behind a shape argument while
the graph is *imported* (a Reshape whose shape sums a ``Range(0, 2**28)`` made the import allocate
1 GiB), Grappler folds constants and tf2onnx folds with numpy.

So ``check`` works on the GraphDef itself, in Python, before any import: it propagates static
shapes and small integer values (shapes, sizes, the arguments of Range/Fill/Tile...) from the
constants and the placeholders' shapes (the cut's ``input_shape``), and refuses the first node whose
output would be larger than one tensor may be. Dimensions it cannot know count as 1, so what it
checks is a lower bound of the real size: nothing legitimate is refused for what is unknown, and a
data-dependent size is left to the children's memory bound (``kfreeze.child``). No tensor larger
than ``VALUE_MAX`` elements is ever materialized here.

``policy.check`` calls it, so it runs wherever a graph is run or converted; the optimize child
calls it through ``resources.check_activations``, before Grappler.
"""

from __future__ import annotations

import math
import struct

from kfreeze.errors import KfreezeError

GiB = 2**30
MAX_RANK = 254  # TensorFlow's: a longer shape argument is no shape (and a tuple that long is not built)
VALUE_MAX = 4096  # elements: integer tensors evaluated here (shapes, sizes, arguments) stay this small

# DataType enum -> bytes an element takes in memory (a string: TF's tstring header, without its text)
_ITEM = {1: 4, 2: 8, 3: 4, 4: 1, 5: 2, 6: 1, 7: 24, 8: 8, 9: 8, 10: 1, 11: 1, 12: 1, 13: 4, 14: 2, 15: 2,
         16: 4, 17: 2, 18: 16, 19: 2, 22: 4, 23: 8}
_INTS = {3: "<i4", 9: "<i8", 4: "<u1", 5: "<i2", 6: "<i1", 17: "<u2", 22: "<u4", 23: "<u8"}
_FLOATS = {1: "<f4", 2: "<f8"}

_SAME_SHAPE = frozenset("""
Identity Snapshot StopGradient PreventGradient CheckNumerics CheckNumericsV2 EnsureShape Cast Enter Exit RefEnter
RefExit NextIteration RefNextIteration Abs Acos Acosh Asin Asinh Atan Atanh Ceil Cos Cosh Digamma Elu Erf Erfc Erfinv
Exp Expm1 Floor Gelu Inv Invert IsFinite IsInf IsNan LeakyRelu Lgamma Log Log1p LogicalNot LogSoftmax Ndtri Neg
OnesLike ZerosLike Reciprocal Relu Relu6 Rint Round Rsqrt Selu Sigmoid Sign Sin Sinh Softmax Softplus Softsign Sqrt
Square Tan Tanh Conj Real Imag ComplexAbs Angle PopulationCount ClipByValue Cumsum Cumprod CumulativeLogsumexp
Bitcast FakeQuantWithMinMaxArgs FakeQuantWithMinMaxVars FakeQuantWithMinMaxVarsPerChannel
QuantizeAndDequantizeV2 QuantizeAndDequantizeV3 QuantizeAndDequantizeV4 BiasAdd BiasAddV1 Roll ReverseV2 Reverse
GuaranteeConst DeepCopy LRN ReverseSequence
""".split())
_BROADCAST = frozenset("""
Add AddV2 Sub Mul MulNoNan Div DivNoNan RealDiv FloorDiv FloorMod TruncateDiv TruncateMod Mod Maximum Minimum Pow
SquaredDifference Atan2 Equal NotEqual Greater GreaterEqual Less LessEqual LogicalAnd LogicalOr BitwiseAnd
BitwiseOr BitwiseXor LeftShift RightShift Xdivy Xlogy Xlog1py Igamma Igammac Zeta Polygamma Betainc Complex
ApproximateEqual NextAfter SelectV2
""".split())
_ARITH = {"Add": lambda a, b: a + b, "AddV2": lambda a, b: a + b, "Sub": lambda a, b: a - b,
          "Mul": lambda a, b: a * b, "FloorDiv": lambda a, b: a // b, "Maximum": lambda a, b: max(a, b),
          "Minimum": lambda a, b: min(a, b), "FloorMod": lambda a, b: a % b}
# ops whose input 0 (or input ``index``) is the shape of their one output
_SHAPE_ARG = {"Fill": 0, "BroadcastTo": 1, "Empty": 0, "RandomUniform": 0, "RandomStandardNormal": 0,
              "TruncatedNormal": 0, "RandomUniformInt": 0, "ParameterizedTruncatedNormal": 0,
              "StatelessRandomUniform": 0, "StatelessRandomNormal": 0, "StatelessTruncatedNormal": 0,
              "StatelessRandomUniformInt": 0, "StatelessRandomUniformFullInt": 0, "StatelessRandomUniformV2": 0,
              "StatelessRandomNormalV2": 0, "StatelessTruncatedNormalV2": 0, "StatelessRandomUniformIntV2": 0,
              "StatelessRandomUniformFullIntV2": 0, "StatelessRandomBinomial": 0, "StatelessRandomPoisson": 0,
              "StatelessParameterizedTruncatedNormal": 0, "RandomUniformIntV2": 0, "ScatterNd": 2,
              "ScatterNdNonAliasingAdd": None, "SparseToDense": 1, "Conv2DBackpropInput": 0,
              "Conv3DBackpropInputV2": 0, "DepthwiseConv2dNativeBackpropInput": 0, "TensorScatterUpdate": None}
_DECODE = frozenset(("DecodePng", "DecodeJpeg", "DecodeBmp", "DecodeGif", "DecodeImage", "DecodeAndCropJpeg"))
# Not counted: in memory already (the file holds a constant, the feed a placeholder), or a view of
# their input that allocates nothing (their input was counted).
_NOT_COUNTED = frozenset("""
Const Placeholder PlaceholderV2 PlaceholderWithDefault VariableV2 VarHandleOp Variable Identity Snapshot StopGradient
PreventGradient Enter Exit RefEnter RefExit NextIteration RefNextIteration Reshape ExpandDims Squeeze EnsureShape
CheckNumerics CheckNumericsV2 GuaranteeConst
""".split())



def _attr(node, key: str):
    """``node.attr[key]`` without adding it: indexing a protobuf map inserts the key, and the checked
    graph would come out changed (an empty 'adj_x' on a MatMul fails TF's oneDNN rewrite)."""
    if key in node.attr:
        return node.attr[key]
    from tensorflow.core.framework import attr_value_pb2  # loaded already: the graph is TF's message
    return attr_value_pb2.AttrValue()

def tensor_limit(model_bytes: int) -> int:
    """The largest tensor one op may compute: a quarter of the children's memory bound
    (``kfreeze.child.memory_bound``: 4 GiB + 16x the model, or ``KFREEZE_MEMORY_LIMIT_GB``), since
    folding or running an op holds its inputs and output at once and a converter copies them again."""
    from kfreeze.child import memory_bound
    return memory_bound(model_bytes) // 4


def check(graph, where: str, shapes: dict | None = None, limit: int | None = None) -> None:
    """Refuse ``graph`` when one of its ops would compute a tensor over ``limit`` bytes (default
    ``tensor_limit`` of the graph's size), naming the first such node. ``shapes`` overrides the
    static shapes of placeholders ({node: [dims]}, -1/None unknown): the cut's input_shape."""
    if limit is None:
        limit = tensor_limit(graph.ByteSize())
    found = largest(graph, shapes, limit)
    if found is None:
        return
    name, op, shape, size = found
    dims = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    raise KfreezeError(where, f"node '{name}' ({op}) would compute a tensor of {size / GiB:.1f} GiB (shape {dims}), "
                       f"over the {limit / GiB:.1f} GiB one op may allocate (from the model's size)",
                       "remove or shrink that op (its size comes from constants or input_shape); if the machine "
                       "has the memory, raise KFREEZE_MEMORY_LIMIT_GB (in GiB, the bound is a quarter of it)")


def largest(graph, shapes: dict | None = None, limit: int = 0):
    """(node, op, shape, bytes) of the first op, in the order inputs come before their users, whose
    output is over ``limit`` bytes at least; None when there is none. Function bodies too."""
    found = _Scope(graph.node, shapes or {}, limit, "").run()
    if found:
        return found
    for func in graph.library.function:
        found = _Scope(func.node_def, {}, limit, func.signature.name + "/").run()
        if found:
            return found
    return None


class _Scope:
    """One graph or function body: static shapes and small values by (node, port)."""

    def __init__(self, nodes, shapes: dict, limit: int, prefix: str):
        self.nodes = {n.name: n for n in nodes}
        self.fed = {k.split(":")[0]: v for k, v in shapes.items()}
        self.limit, self.prefix = limit, prefix
        self.shape: dict = {}   # (node, port) -> tuple of dims (None: unknown), or absent: unknown rank
        self.value: dict = {}   # (node, port) -> nested list of ints/floats, small

    def run(self):
        refs = self.refs = {}
        for node in self.nodes.values():
            refs[node.name] = [self._ref(i) for i in node.input if i[:1] != "^"]
        done: set[str] = set()
        for start in self.nodes:
            if start in done:
                continue
            stack = [(start, False)]
            while stack:
                name, expanded = stack.pop()
                if expanded:
                    found = self._visit(self.nodes[name])
                    if found:
                        return found
                    continue
                if name in done:
                    continue
                done.add(name)
                stack.append((name, True))
                for src, _ in refs[name]:
                    if src not in done and src in refs:
                        stack.append((src, False))
        return None

    @staticmethod
    def _ref(name: str):
        parts = name.split(":")
        if len(parts) == 1:
            return parts[0], 0
        try:
            return parts[0], int(parts[-1])
        except ValueError:
            return parts[0], 0

    def _inputs(self, node) -> list:
        return self.refs[node.name]

    def _visit(self, node):
        try:
            shape = self._infer(node)
        except (ValueError, TypeError, ArithmeticError, IndexError, KeyError, RecursionError, struct.error):
            shape = None  # an argument this code cannot read: unknown, as TF would say at run time
        if shape is None:
            return None
        self.shape[(node.name, 0)] = shape
        if node.op in _NOT_COUNTED:
            return None
        count = 1
        for d in shape:
            count *= d if d is not None and d > 0 else 1
        size = count * self._item(node)
        if size > self.limit:
            return self.prefix + node.name, node.op, list(shape), size
        return None

    def _item(self, node) -> int:
        if node.op in _DECODE:
            return 2 if _attr(node, "dtype").type == 17 else 1
        for key in ("dtype", "T", "out_type", "DstT", "Tidx", "output_type", "Tout"):
            if key in node.attr and node.attr[key].type:
                return _ITEM.get(node.attr[key].type, 4)
        return 4

    # -- shapes and values --------------------------------------------------------

    def _in_shape(self, node, i):
        ins = self._inputs(node)
        return self.shape.get(ins[i]) if i < len(ins) else None

    def _in_value(self, node, i):
        ins = self._inputs(node)
        return self.value.get(ins[i]) if i < len(ins) else None

    def _set_value(self, node, value) -> None:
        if _count(value) <= VALUE_MAX:
            self.value[(node.name, 0)] = value

    def _infer(self, node):
        op = node.op
        if op in ("Placeholder", "PlaceholderV2", "PlaceholderWithDefault"):
            if node.name in self.fed and self.fed[node.name] is not None:
                return tuple(None if d is None or d < 0 else int(d) for d in self.fed[node.name])
            if "shape" in node.attr and not _attr(node, "shape").shape.unknown_rank:
                return tuple(None if d.size < 0 else d.size for d in _attr(node, "shape").shape.dim)
            return self._in_shape(node, 0) if op == "PlaceholderWithDefault" else None
        if op == "Const":
            tensor = _attr(node, "value").tensor
            shape = tuple(d.size for d in tensor.tensor_shape.dim)
            small = len(shape) <= 8 and all(0 <= d <= VALUE_MAX for d in shape)
            if small and math.prod(shape) <= (VALUE_MAX if tensor.dtype in _INTS else 16):  # floats: Range's
                value = _const_value(tensor, shape)
                if value is not None:
                    self._set_value(node, value)
            return shape
        if op in ("Shape", "Size", "Rank"):
            shape = self._in_shape(node, 0)
            if shape is None:
                return (None,) if op == "Shape" else ()
            if None not in shape or op == "Rank":
                self._set_value(node, {"Shape": list(shape), "Size": math.prod(shape) if None not in shape else 0,
                                       "Rank": len(shape)}[op])
            return (len(shape),) if op == "Shape" else ()
        if op in _SAME_SHAPE:
            if op in ("Identity", "Snapshot", "StopGradient", "Cast", "Enter", "Neg", "Abs", "EnsureShape"):
                value = self._in_value(node, 0)
                if value is not None:
                    self._set_value(node, _map(value, lambda v: -v if op == "Neg" else abs(v) if op == "Abs" else v))
            return self._in_shape(node, 0)
        if op in _BROADCAST:
            if op in _ARITH:
                a, b = self._in_value(node, 0), self._in_value(node, 1)
                if a is not None and b is not None:
                    value = _broadcast_values(a, b, _ARITH[op])
                    if value is not None:
                        self._set_value(node, value)
            shapes = [self._in_shape(node, i) for i in range(len(self._inputs(node)))]
            return _broadcast(shapes)
        if op == "Select":
            return self._in_shape(node, 1)
        if op in ("Pack", "ConcatV2", "Concat"):
            return self._concat(node)
        if op == "StridedSlice":
            return self._strided_slice(node)
        if op in ("Prod", "Sum", "Max", "Min", "Mean", "All", "Any", "ArgMax", "ArgMin", "EuclideanNorm"):
            return self._reduce(node)
        if op == "Reshape":
            return self._reshape(node)
        if op == "ExpandDims":
            shape, axis = self._in_shape(node, 0), self._in_value(node, 1)
            if shape is None or axis is None:
                return None
            axis = _scalar(axis)
            axis = axis + len(shape) + 1 if axis < 0 else axis
            value = self._in_value(node, 0)
            if value is not None and not isinstance(value, list) and axis == 0:
                self._set_value(node, [value])
            return shape[:axis] + (1,) + shape[axis:]
        if op == "Squeeze":
            shape = self._in_shape(node, 0)
            dims = list(_attr(node, "squeeze_dims").list.i)
            if shape is None or (not dims and None in shape):
                return None
            dims = {d % len(shape) for d in dims} if dims else {i for i, d in enumerate(shape) if d == 1}
            return tuple(d for i, d in enumerate(shape) if i not in dims)
        if op == "Transpose":
            shape, perm = self._in_shape(node, 0), self._in_value(node, 1)
            if shape is None:
                return None
            return tuple(shape[p] for p in perm) if perm is not None else tuple(None for _ in shape)
        if op == "Range":
            start, limit, delta = (self._in_value(node, i) for i in range(3))
            if start is None or limit is None or delta is None:
                return (None,)
            start, limit, delta = _scalar(start), _scalar(limit), _scalar(delta)
            count = max(0, math.ceil((limit - start) / delta)) if delta else 0
            if count <= VALUE_MAX and all(isinstance(v, int) for v in (start, limit, delta)):
                self._set_value(node, list(range(start, limit, delta)))
            return (count,)
        if op == "LinSpace":
            num = self._in_value(node, 2)
            return (int(_scalar(num)),) if num is not None else (None,)
        if op in _SHAPE_ARG and _SHAPE_ARG[op] is not None:
            dims = self._in_value(node, _SHAPE_ARG[op])
            if dims is None:
                rank = self._in_shape(node, _SHAPE_ARG[op])
                known = rank and rank[0] is not None and rank[0] <= MAX_RANK
                return tuple(None for _ in range(rank[0])) if known else None
            dims = _flat(dims)
            if op == "Fill":
                value = self._in_value(node, 1)
                if value is not None and math.prod(dims) <= VALUE_MAX and len(dims) <= 1:
                    self._set_value(node, [_scalar(value)] * dims[0] if dims else _scalar(value))
            return tuple(int(d) if d >= 0 else None for d in dims)
        if op == "Tile":
            shape, mult = self._in_shape(node, 0), self._in_value(node, 1)
            if mult is None:
                return shape and tuple(None for _ in shape)
            mult = _flat(mult)
            shape = shape if shape is not None and len(shape) == len(mult) else tuple(None for _ in mult)
            return tuple(m if d is None else d * m for d, m in zip(shape, mult))
        if op == "OneHot":
            shape, depth = self._in_shape(node, 0), self._in_value(node, 1)
            depth = int(_scalar(depth)) if depth is not None else None
            shape = shape if shape is not None else ()
            axis = _attr(node, "axis").i if "axis" in node.attr else -1
            axis = len(shape) if axis < 0 else axis
            return shape[:axis] + (depth,) + shape[axis:]
        if op in ("Pad", "PadV2", "MirrorPad"):
            shape, pads = self._in_shape(node, 0), self._in_value(node, 1)
            if pads is None:
                return shape and tuple(None for _ in shape)
            shape = shape if shape is not None and len(shape) == len(pads) else tuple(None for _ in pads)
            return tuple(None if d is None and not sum(p) else (d or 0) + sum(p) for d, p in zip(shape, pads))
        if op in ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
            return self._matmul(node)
        if op in ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic", "ResizeArea", "ScaleAndTranslate"):
            shape, size = self._in_shape(node, 0), self._in_value(node, 1)
            size = _flat(size) if size is not None else [None, None]
            shape = shape if shape is not None and len(shape) == 4 else (None,) * 4
            return (shape[0], *size, shape[3])
        if op in ("UnsortedSegmentSum", "UnsortedSegmentMax", "UnsortedSegmentMin", "UnsortedSegmentProd"):
            num = self._in_value(node, 2)
            return (int(_scalar(num)),) if num is not None else None
        if op in ("Bincount", "DenseBincount", "SparseBincount"):
            size = self._in_value(node, 1)
            return (int(_scalar(size)),) if size is not None else None
        if op in ("Multinomial", "StatelessMultinomial"):
            shape, num = self._in_shape(node, 0), self._in_value(node, 1)
            return ((shape or (None,))[0], int(_scalar(num)) if num is not None else None)
        if op in _DECODE:
            return self._decode(node)
        return None

    def _concat(self, node):
        ins = self._inputs(node)
        if node.op == "Pack":
            values = [self.value.get(i) for i in ins]
            if all(v is not None for v in values):
                self._set_value(node, values)
            shapes = [self.shape.get(i) for i in ins]
            known = [s for s in shapes if s is not None]
            if not known:
                return None
            axis = _attr(node, "axis").i
            base = known[0]
            axis = axis + len(base) + 1 if axis < 0 else axis
            return base[:axis] + (len(ins),) + base[axis:]
        axis_i, parts = (len(ins) - 1, ins[:-1]) if node.op == "ConcatV2" else (0, ins[1:])
        axis = self.value.get(ins[axis_i])
        values = [self.value.get(i) for i in parts]
        shapes = [self.shape.get(i) for i in parts]
        if axis is None or any(s is None for s in shapes) or len({len(s) for s in shapes}) != 1:
            return None
        axis = _scalar(axis)
        axis = axis % len(shapes[0]) if shapes[0] else 0
        if axis == 0 and len(shapes[0]) == 1 and all(isinstance(v, list) for v in values):
            self._set_value(node, [x for v in values for x in v])
        dims = [s[axis] for s in shapes]
        total = None if None in dims else sum(dims)
        out = list(shapes[0])
        out[axis] = total
        for s in shapes[1:]:  # the other dimensions agree; a known one wins over an unknown
            out = [o if o is not None else d for o, d in zip(out, s)] if len(s) == len(out) else out
            out[axis] = total
        return tuple(out)

    def _strided_slice(self, node):
        shape = self._in_shape(node, 0)
        value = self._in_value(node, 0)
        begin, end, strides = (self._in_value(node, i) for i in (1, 2, 3))
        if shape is None or len(shape) != 1 or begin is None or end is None or strides is None \
                or any(node.attr[m].i for m in ("ellipsis_mask", "new_axis_mask")):
            return None
        b, e, s = _flat(begin)[0], _flat(end)[0], _flat(strides)[0]
        b = None if _attr(node, "begin_mask").i & 1 else b
        e = None if _attr(node, "end_mask").i & 1 else e
        if _attr(node, "shrink_axis_mask").i & 1:
            if value is not None:
                self._set_value(node, value[b if b is not None else 0])
            return ()
        if value is not None:
            picked = value[slice(b, e, s)]
            self._set_value(node, picked)
            return (len(picked),)
        if shape[0] is None:
            return (None,)
        return (len(range(*slice(b, e, s).indices(shape[0]))),)

    def _reduce(self, node):
        shape, axes = self._in_shape(node, 0), self._in_value(node, 1)
        keep = _attr(node, "keep_dims").b or _attr(node, "keepdims").b
        if shape is None or axes is None:
            return None
        axes = {a % len(shape) for a in _flat(axes)} if shape else set()
        value = self._in_value(node, 0)
        if node.op in ("Prod", "Sum") and value is not None and len(shape) == 1 and axes == {0} and not keep:
            self._set_value(node, math.prod(value) if node.op == "Prod" else sum(value))
        if node.op in ("ArgMax", "ArgMin"):
            keep = False
        return tuple((1 if keep else None) if i in axes else d for i, d in enumerate(shape)
                     if keep or i not in axes)

    def _reshape(self, node):
        target = self._in_value(node, 1)
        if target is None:
            return None
        dims = [int(d) for d in _flat(target)]
        value = self._in_value(node, 0)
        if value is not None and len(dims) <= 1:
            flat = _flat(value)
            self._set_value(node, flat if dims else flat[0])
        if dims.count(-1) == 1:
            shape = self._in_shape(node, 0)
            known = math.prod(d for d in dims if d != -1)
            if shape is not None and None not in shape and known:
                dims[dims.index(-1)] = math.prod(shape) // known
        return tuple(None if d < 0 else d for d in dims)

    def _matmul(self, node):
        a, b = self._in_shape(node, 0), self._in_shape(node, 1)
        if a is None or b is None or len(a) < 2 or len(b) < 2:
            return None
        ta = _attr(node, "transpose_a").b or _attr(node, "adj_x").b
        tb = _attr(node, "transpose_b").b or _attr(node, "adj_y").b
        m = a[-1] if ta else a[-2]
        n = b[-2] if tb else b[-1]
        batch = _broadcast([a[:-2], b[:-2]]) or ()
        return tuple(batch) + (m, n)

    def _decode(self, node):
        """Height, width and channels read from a constant image's header, before anything decodes it."""
        src = self._inputs(node)[0] if self._inputs(node) else None
        const = self.nodes.get(src[0]) if src else None
        if const is None or const.op != "Const" or not _attr(const, "value").tensor.string_val:
            return (None, None, None)
        data = _attr(const, "value").tensor.string_val[0]
        size = image_size(data)
        if size is None:
            return (None, None, None)
        height, width, frames = size
        channels = _attr(node, "channels").i if "channels" in node.attr else 0
        channels = channels or size_channels(data)
        if node.op == "DecodeJpeg" or node.op == "DecodeAndCropJpeg":
            ratio = _attr(node, "ratio").i or 1
            height, width = -(-height // ratio), -(-width // ratio)
        if node.op == "DecodeGif" or (node.op == "DecodeImage" and frames > 1):
            return (frames, height, width, 3)
        return (height, width, channels)


def size_channels(data: bytes) -> int:
    """The channels a decode op with ``channels: 0`` gives: the file's own (a PNG's colour type), else 1."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25:
        return {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}.get(data[25], 1)
    return 1


def image_size(data: bytes):
    """(height, width, frames) from a PNG, JPEG, GIF or BMP header; None for anything else."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return height, width, 1
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                i += 1
                continue
            marker = data[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 1 if marker == 0xFF else 2
                continue
            length = struct.unpack(">H", data[i + 2:i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[i + 5:i + 9])
                return height, width, 1
            i += 2 + length
        return None
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return height, width, max(1, data.count(b"\x2c"))  # image descriptors, at most: an upper bound
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(height), abs(width), 1
    return None


# -- small values ---------------------------------------------------------------------

def _const_value(tensor, shape):
    dtype = tensor.dtype
    n = math.prod(shape)
    if dtype in _INTS or dtype in _FLOATS:
        import numpy as np
        fmt = _INTS.get(dtype) or _FLOATS[dtype]
        if tensor.tensor_content:
            flat = np.frombuffer(tensor.tensor_content, dtype=fmt)[:n].tolist()
        else:
            vals = list(tensor.int64_val if dtype == 9 else tensor.uint64_val if dtype == 23
                        else tensor.float_val if dtype == 1 else tensor.double_val if dtype == 2 else tensor.int_val)
            flat = (vals + vals[-1:] * (n - len(vals)))[:n] if vals else [0] * n
        if len(flat) != n:
            return None
        if dtype in _INTS:
            flat = [int(v) for v in flat]
        return _nest(flat, list(shape))
    return None


def _nest(flat: list, shape: list):
    if not shape:
        return flat[0]
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


def _count(value) -> int:
    return sum(_count(v) for v in value) if isinstance(value, list) else 1


def _flat(value) -> list:
    if not isinstance(value, list):
        return [value]
    return [x for v in value for x in _flat(v)]


def _scalar(value):
    return _flat(value)[0]


def _map(value, fn):
    return [_map(v, fn) for v in value] if isinstance(value, list) else fn(value)


def _broadcast_values(a, b, fn):
    if not isinstance(a, list) and not isinstance(b, list):
        return fn(a, b)
    if isinstance(a, list) and not isinstance(b, list):
        return [_broadcast_values(x, b, fn) for x in a]
    if isinstance(b, list) and not isinstance(a, list):
        return [_broadcast_values(a, y, fn) for y in b]
    if len(a) == len(b):
        return [_broadcast_values(x, y, fn) for x, y in zip(a, b)]
    if len(a) == 1:
        return [_broadcast_values(a[0], y, fn) for y in b]
    if len(b) == 1:
        return [_broadcast_values(x, b[0], fn) for x in a]
    return None


def _broadcast(shapes):
    """numpy's broadcast of static shapes; an unknown dimension stays unknown unless the other is > 1.
    An input of unknown rank makes the result unknown (a partial shape would be wrong for the ops after)."""
    known = [s for s in shapes if s is not None]
    if not known or len(known) < len(shapes):
        return None
    rank = max(len(s) for s in known)
    out = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in known if len(s) - rank + i >= 0]
        big = [d for d in dims if d is not None and d != 1]
        if big:
            out.append(max(big))
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)

