"""Verify's inputs: seeded random ones, or the user's own from an .npz in models/<name>/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple  # None for a dynamic dimension


def make_inputs(infos: list[TensorInfo], samples: int, seed: int,
                input_range: tuple[float, float] = (0.0, 1.0),
                index_limits: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs: floats uniform in ``input_range`` ([0, 1) by default, image-like); an open
    dimension besides the batch at ``DYNAMIC_SIZE``.

    Integers: with the default range, every id the input's first layer takes
    (``index_limits``: an Embedding's input_dim, a one-hot depth; see ``index_limits``),
    else small integers 0..9; with an explicit range, integers in [low, high) clipped to
    the dtype. Booleans: 0/1. A float input with an index limit (Embedding ids that opencv: true
    feeds as floats): drawn as int32 ids are, as floats.
    """
    rng = np.random.default_rng(seed)
    low, high = input_range
    feeds = {}
    for info in infos:
        dims = _sample_dims(info, samples)
        dtype = np.dtype(tf.as_dtype(info.dtype).as_numpy_dtype)
        if dtype.kind not in "biuf":  # a string (image bytes) or complex input: no random value means anything
            raise KfreezeError(f"input '{info.name}'", f"is a {info.dtype} tensor, for which verify makes no inputs",
                               "cut the graph at a numeric tensor after it (--inputs, or inputs in params.yaml)")
        # Embedding ids fed as floats (opencv: true, kfreeze.optimize.passes.opencv_embedding): drawn as int32
        draw_as = dtype if not np.issubdtype(dtype, np.floating) or info.name not in (index_limits or {}) \
            else np.dtype(np.int32)
        if np.issubdtype(draw_as, np.floating):
            u = rng.random(dims, dtype=np.float32) if (low, high) == (0.0, 1.0) else \
                (low + (high - low) * rng.random(dims)).astype(np.float32)
            feeds[info.name] = u.astype(dtype)
        elif draw_as == np.bool_:
            feeds[info.name] = rng.integers(0, 2, dims).astype(dtype)
        else:
            default = (0, (index_limits or {}).get(info.name, 10))
            lo, hi = default if (low, high) == (0.0, 1.0) else (int(np.ceil(low)), int(np.ceil(high)))
            limits = np.iinfo(draw_as)
            lo, hi = max(lo, int(limits.min)), min(hi, int(limits.max) + 1)
            feeds[info.name] = rng.integers(lo, max(hi, lo + 1), dims).astype(dtype)
    return feeds


# A dimension the graph leaves open besides the batch (a sequence's length, an image's size) is fed
# at this size: the graph keeps it open, as Keras' own export does, and verify still runs it.
DYNAMIC_SIZE = 32


def _sample_dims(info: TensorInfo, samples: int) -> list[int]:
    if info.shape is None:
        raise KfreezeError(f"input '{info.name}'", "has unknown rank, so verify cannot make inputs",
                           "set the model's input_shape")
    dims = [DYNAMIC_SIZE if d is None else d for d in info.shape]
    if dims:
        dims[0] = samples  # a fixed batch is run batch by batch, see run_batched
    return dims


def load_data(path: Path, infos: list[TensorInfo], names: list[str], samples: int) -> dict[str, np.ndarray]:
    """Real inputs from an ``.npz``: one array per input (keyed by the input name as the entry
    gives it, or by its placeholder name), rows = samples; the first ``samples`` rows are used.

    Loaded with ``allow_pickle=False``: an object array is refused, never unpickled.
    """
    import zipfile
    _check_npz(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
        reason = " ".join(str(e).split())[:200]
        raise KfreezeError(path, f"cannot be read as an .npz of plain arrays ({type(e).__name__}: {reason})",
                           "write it with numpy.savez(path, input_name=array, ...) from numeric arrays") from None
    feeds, rows = {}, set()
    for info, name in zip(infos, names):
        key = name if name in arrays else info.name if info.name in arrays else None
        if key is None:
            raise KfreezeError(path, f"has no array for input '{name}' (it has {sorted(arrays)})",
                               f"add one: numpy.savez(..., **{{'{name}': x}})")
        x = arrays[key]
        dtype = np.dtype(tf.as_dtype(info.dtype).as_numpy_dtype)
        if x.dtype.kind not in "biuf" or not np.can_cast(x.dtype, dtype, "same_kind"):
            raise KfreezeError(path, f"array '{key}' has dtype {x.dtype}, which does not convert to the "
                               f"input's {dtype}", f"save it as {dtype}")
        want = list(info.shape or [])
        if info.shape is None or x.ndim != len(want) or any(w is not None and w != d for w, d in zip(want[1:], x.shape[1:])):
            shape = "?" if info.shape is None else [("N" if i == 0 else ("?" if d is None else d)) for i, d in enumerate(want)]
            raise KfreezeError(path, f"array '{key}' has shape {list(x.shape)}; input '{name}' takes {shape}",
                               "one row per sample along the first axis")
        if x.shape[0] < 1:
            raise KfreezeError(path, f"array '{key}' has no rows", "save at least one sample")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise KfreezeError(path, f"array '{key}' holds NaN or Inf", "save finite inputs")
        rows.add(x.shape[0])
        feeds[info.name] = np.ascontiguousarray(x[:samples].astype(dtype))
    if len(rows) > 1:
        raise KfreezeError(path, f"arrays have different numbers of rows {sorted(rows)}", "one row per sample in each")
    return feeds


_THROUGH = {"Identity", "Cast", "Reshape", "ExpandDims", "Squeeze", "StopGradient", "Snapshot", "Transpose"}


def index_limits(graph: graph_pb2.GraphDef, names: list[str]) -> dict[str, int]:
    """{integer input: how many ids it indexes}, for inputs that feed (through casts and
    reshapes) the indices of a Gather over a constant table (an Embedding: its input_dim) or a
    OneHot (its depth); and float ids that opencv_embedding's one-hot MatMul reads (its V). Ids
    0..9 into a 10000-word embedding check ten rows of it; a text model fed zeros gives a
    constant output that proves nothing."""
    by_name = {n.name: n for n in graph.node}
    users: dict[str, list] = {}
    for node in graph.node:
        for i, inp in enumerate(node.input):
            users.setdefault(inp.lstrip("^").split(":")[0], []).append((node, i))

    def const_shape(name):
        node = by_name.get(name.split(":")[0])
        if node is None or node.op not in ("Const", "Placeholder"):
            return None
        shape = node.attr["value"].tensor.tensor_shape if node.op == "Const" else node.attr["shape"].shape
        return [d.size for d in shape.dim]

    def const_value(name):
        node = by_name.get(name.split(":")[0])
        return None if node is None or node.op != "Const" else tf.make_ndarray(node.attr["value"].tensor)

    limits = {}
    for name in names:
        stack, seen, found = [name], set(), []
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            for node, i in users.get(current, []):
                if (node.op in _THROUGH and i == 0) or (node.op in ("SelectV2", "Select") and i > 0) \
                        or node.op in ("AddV2", "Add"):  # Keras 3's Embedding wraps negative ids: x < 0 ? x + n : x
                    stack.append(node.name)
                elif node.op in ("GatherV2", "Gather", "ResourceGather") and i == 1:
                    axis = const_value(node.input[2]) if node.op == "GatherV2" and len(node.input) > 2 else 0
                    shape = const_shape(node.input[0])
                    if shape and axis is not None and int(axis) == 0 and shape[0] > 0:
                        found.append(shape[0])
                elif node.op == "MatMul" and i == 0 and "/opencv_spread" in node.name:
                    # opencv_embedding's lookup: float ids times ones[1, V] (then minus arange(V), a one-hot);
                    # by shape, as verify reads a light graph (kfreeze.optimize.graph.light_graph)
                    shape = const_shape(node.input[1])
                    if shape and len(shape) == 2 and shape[0] == 1 and shape[1] > 0:
                        found.append(int(shape[1]))
                elif node.op == "OneHot" and i == 0:
                    depth = const_value(node.input[1])
                    if depth is not None and int(depth) > 0:
                        found.append(int(depth))
        if found:
            limits[name] = min(found)
    return limits


DATA_LIMIT = 2 * 2**30  # verify feeds at most VERIFY_MAX_SAMPLES rows; 2 GiB of them is plenty


def _check_npz(path: Path) -> None:
    """What each array of the .npz declares (its .npy header), before numpy allocates it: a 16 MB
    file whose members inflate to 16 GiB, or a header declaring (10**12, 4), is refused here."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise KfreezeError(path, f"member '{info.filename}' is not an .npy array",
                                       "write the file with numpy.savez(path, input_name=array, ...)")
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0(f))
                count = 1
                for d in shape:
                    count *= int(d)
                total += count * dtype.itemsize
                if total > DATA_LIMIT or info.file_size > DATA_LIMIT:
                    raise KfreezeError(path, f"array '{info.filename[:-4]}' declares shape {list(shape)} "
                                       f"({count * dtype.itemsize / 2**30:.1f} GiB); the arrays may hold at most "
                                       f"{DATA_LIMIT / 2**30:.0f} GiB", "save only the samples verify needs")
    except zipfile.BadZipFile:  # a lone .npy would be loaded whole, whatever its header declares
        raise KfreezeError(path, "is not an .npz (a zip of .npy arrays)",
                           "write it with numpy.savez(path, input_name=array, ...)") from None
    except (ValueError, OSError, EOFError) as e:
        raise KfreezeError(path, f"has an unreadable array header ({' '.join(str(e).split())[:160]})",
                           "write it with numpy.savez(path, input_name=array, ...)") from None


def placeholder_infos(graph: graph_pb2.GraphDef, names: list[str]) -> list[TensorInfo]:
    by_name = {n.name: n for n in graph.node}
    infos = []
    for name in names:
        node = by_name[name]
        shape = tf.TensorShape(node.attr["shape"].shape)
        dims = None if shape.rank is None else tuple(shape.as_list())
        infos.append(TensorInfo(name, tf.as_dtype(node.attr["dtype"].type).name, dims))
    return infos


def data_file(spec, vspec) -> Path:
    """Where ``verify.data`` points: models/<name>/<data> in a project; the path itself for a file
    named on kfreeze run's command line (the spec's origin has no folder)."""
    folder = spec.at.folder
    return Path(vspec.data) if folder is None else Path(folder) / vspec.data


def data_path(spec, vspec) -> Path | None:
    """``verify.data`` for this model: models/<name>/<data>, which must stay inside that
    folder after symlinks are followed; None when unset or when this model has no such file."""
    if not vspec.data:
        return None
    path = data_file(spec, vspec)
    if spec.at.folder is None:
        return path if path.is_file() else None
    folder = Path(spec.at.folder)
    if not path.exists():
        return None
    if not path.resolve().is_relative_to(folder.resolve()):
        raise KfreezeError(path, f"resolves to {path.resolve()}, outside {folder}/ (a symlink?)",
                           f"put the real file in {folder}/")
    if not path.is_file():
        raise KfreezeError(path, "is not a file", "verify.data names an .npz file in the model's folder")
    return path
