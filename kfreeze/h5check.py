"""Check an HDF5 file's structure (``check_structure``: no external storage, links or virtual datasets,
no oversized datasets) and its datasets' sizes against the architecture (``check_weights``), then read
every attribute and dataset in a child process, with a time limit.

libhdf5 can loop forever on a damaged file (seen when fuzzing: one inserted byte
is enough), inside C code that no Python signal interrupts. So a child reads the
file first: ``check`` (convert's first step) reads only metadata, since no data may
be read before the loader has compared the declared sizes with the architecture;
``check_weights`` then has a child read all data, and only then do Keras and h5py read it.
Usage: python -m kfreeze.h5check FILE [--data].
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

from kfreeze.errors import KfreezeError

TIMEOUT_S = 60
KFREEZE_PREFIX = "kfreeze-refused: "


def check(path: str | Path, timeout: float = TIMEOUT_S, read_data: bool = False) -> None:
    """In a child process: the structure, every attribute and dataset header, and with
    ``read_data`` every dataset's values (only after ``check_weights``' size comparison)."""
    cmd = [sys.executable, "-m", "kfreeze.h5check", str(path), *(["--data"] if read_data else [])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise KfreezeError(path, f"reading this HDF5 file did not finish in {timeout:.0f} s",
                           "the file is damaged; re-save it") from None
    if proc.returncode == 3 and KFREEZE_PREFIX in proc.stderr:
        problem, _, fix = proc.stderr.split(KFREEZE_PREFIX, 1)[1].strip().partition("\t")
        raise KfreezeError(path, problem, fix)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        reason = lines[-1][:200] if lines else f"exit status {proc.returncode}"
        raise KfreezeError(path, f"not a readable HDF5 file ({reason})", "the file is damaged; re-save it")


def declared_limit(file_size: int) -> int:
    """How many bytes of datasets a file of ``file_size`` bytes may declare.

    Keras writes weights uncompressed, so their declared size is about the file's
    size; this leaves room for compression without letting a small file (a
    chunked dataset of fill values, or a compressed one) expand to gigabytes.
    """
    return 4 * file_size + DECLARED_SLACK


DECLARED_SLACK = 64 * 2**20


def check_structure(path: str | Path) -> None:
    """Refuse, from metadata alone, an HDF5 file whose datasets would read other files or too much.

    External links and external storage name files outside (``/etc/passwd``),
    virtual datasets map other files' data in, and a dataset's declared size is
    what reading it allocates. No dataset is read here. Keras 3's own reader
    refuses some of these; h5py and tf_keras read them all.
    """
    import h5py

    path = Path(path)
    limit = declared_limit(path.stat().st_size)
    problems: list[str] = []
    total = 0

    def link(name: str) -> None:
        kind = f.get(name, getlink=True)
        if isinstance(kind, h5py.ExternalLink):
            problems.append(f"'{name}' is an external link to {kind.filename}:{kind.path}")
        elif isinstance(kind, h5py.SoftLink) and f.get(name) is None:
            problems.append(f"'{name}' is a soft link to '{kind.path}', which is not in the file")

    def dataset(name: str, obj) -> None:
        nonlocal total
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.external:
            problems.append(f"dataset '{name}' keeps its data in external file(s) "
                            f"{', '.join(str(e[0], 'utf8', 'replace') if isinstance(e[0], bytes) else str(e[0]) for e in obj.external)}")
        elif obj.is_virtual:
            problems.append(f"dataset '{name}' is a virtual dataset (it maps data from other files)")
        # Reading any element inflates its whole chunk: a resizable 48-byte kernel in one gzip chunk
        # declared [32768, 16384] made h5py allocate 2 GiB. A chunk counts as what it holds, or more.
        chunk = math.prod(obj.chunks) if obj.chunks else 0
        total += max(int(obj.size or 0), chunk) * obj.dtype.itemsize

    try:
        with h5py.File(path, "r") as f:
            f.visit_links(link)
            if not problems:
                f.visititems(dataset)
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise KfreezeError(path, f"not a readable HDF5 file ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                           "the file is damaged; re-save it") from None
    if problems:
        raise KfreezeError(path, f"{problems[0]}; kfreeze reads only data stored inside the file",
                           "re-save the model with model.save() from a copy you trust")
    if total > limit:
        raise KfreezeError(path, f"its datasets declare {total / 2**20:.0f} MiB, far more than a "
                           f"{path.stat().st_size / 2**20:.1f} MiB file holds", "the file is damaged or hostile; "
                           "re-save the model")


RATIO = 2            # a layer's datasets may declare twice its weights' values (cuDNN biases)
MAX_ITEMSIZE = 8     # float64: the widest weight dtype Keras writes
SMALL_VALUES = 64    # scalars and counters (an optimizer's 'iterations') need no architecture match
OPTIMIZER_SLOTS = 4  # optimizer_weights: Adam with amsgrad keeps 3 slots per weight, plus counters


def check_weights(path: str | Path, layers: dict[str, list[tuple]], by_layer: bool = True,
                  timeout: float = TIMEOUT_S) -> None:
    """Refuse, from dataset headers alone, weights larger than the architecture ``layers``
    (layer name -> its weights' shapes) needs; then read all data in a child (``check``).

    ``by_layer``: a Keras 1/2 or ``model.save`` .h5, whose datasets sit in a group per
    layer name (under 'model_weights' in a full model). Each layer may declare at most
    ``RATIO`` times its weights' values: Keras 1 per-gate RNN weights fuse into the same
    count, cuDNN biases are twice LSTM's. Otherwise, a Keras 3 ``.weights.h5``, whose groups
    are named by class, not layer: each dataset must have one of the architecture's shapes.
    A dataset in no layer's group is refused. Hand-written: Keras reads a dataset's values
    before it compares shapes, so a 2 GB junk dataset would be read in full.
    """
    import h5py

    path = Path(path)
    need = {name: sum(_count(s) for s in shapes) for name, shapes in layers.items()}
    total = sum(need.values())
    shapes = {tuple(s) for ss in layers.values() for s in ss}
    declared: dict[str, list] = {}  # group -> [values, bytes, (biggest values, dataset, shape)]

    def refuse(problem: str) -> KfreezeError:
        return KfreezeError(path, problem, "the weights file does not belong to this architecture; "
                            "re-save it from the model it was trained as")

    def mib(n: int) -> str:
        return f"{n / 2**20:.1f} MiB"

    try:
        with h5py.File(path, "r") as f:
            top = f["model_weights"] if by_layer and isinstance(f.get("model_weights"), h5py.Group) else f
            items: list[tuple[str, h5py.Dataset]] = []
            f.visititems(lambda n, o: items.append((n, o)) if isinstance(o, h5py.Dataset) else None)
            prefix = top.name.strip("/")
            for name, ds in items:
                values, size = int(ds.size or 0), int(ds.size or 0) * ds.dtype.itemsize
                inner = name if not prefix else name[len(prefix) + 1:] if name.startswith(prefix + "/") else None
                if by_layer and inner is not None:
                    group = inner.split("/")[0]
                    if group == "top_level_model_weights":  # weights tf_keras keeps on the model itself
                        group = "weights"
                    elif group not in need:
                        raise refuse(f"weights for layer '{group}' which the architecture does not have "
                                     f"(dataset '{name}', {values} values, {mib(size)})")
                elif by_layer and name.split("/")[0] == "optimizer_weights":
                    group = "optimizer_weights"
                elif not by_layer and (tuple(ds.shape or ()) in shapes or values <= SMALL_VALUES):
                    group = "weights"
                elif values <= SMALL_VALUES:
                    continue
                elif by_layer:
                    raise refuse(f"dataset '{name}' ({values} values, {mib(size)}) is outside every layer's "
                                 "weights, where the architecture keeps none")
                else:
                    raise refuse(f"dataset '{name}' (layer '{name.rsplit('/vars/', 1)[0]}') declares shape "
                                 f"{tuple(ds.shape or ())} ({values} values, {mib(size)}), which no weight of the "
                                 f"architecture has (its largest has {max(need.values(), default=0)} values)")
                entry = declared.setdefault(group, [0, 0, (-1, "", ())])
                entry[0] += values
                entry[1] += size
                entry[2] = max(entry[2], (values, name, tuple(ds.shape or ())))
    except KfreezeError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError, TypeError) as e:
        raise KfreezeError(path, f"not a readable HDF5 file ({type(e).__name__}: {' '.join(str(e).split())[:160]})",
                           "the file is damaged; re-save it") from None
    for group, (values, size, (most, biggest, shape)) in sorted(declared.items()):
        allowed = (OPTIMIZER_SLOTS * total if group == "optimizer_weights" else
                   RATIO * total if group == "weights" else RATIO * need[group]) + SMALL_VALUES
        if values > allowed or size > MAX_ITEMSIZE * allowed:
            needs = (f"layer '{group}' needs {need[group]} values (shapes {', '.join(map(str, layers[group])) or 'none'})"
                     if group in need else f"weights total {total} values")
            where = f"layer '{group}'" if group in need else group.replace("_", " ")
            raise refuse(f"dataset '{biggest}' ({where}) declares shape {shape}: {most} values, {values} in all of "
                         f"{where} ({mib(size)}), but the architecture's {needs}")
    check(path, timeout, read_data=True)



def _count(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _read_all(path: str, read_data: bool) -> None:
    import h5py

    check_structure(path)

    def visit(_name, obj):
        dict(obj.attrs)
        if isinstance(obj, h5py.Dataset):
            obj.shape, obj.dtype  # the header only; noqa: B018
            if read_data:
                obj[()]

    with h5py.File(path, "r") as f:
        dict(f.attrs)
        f.visititems(visit)


if __name__ == "__main__":
    try:
        _read_all(sys.argv[1], "--data" in sys.argv[2:])
    except KfreezeError as e:  # the whole line for the parent, which re-raises it
        print(f"{KFREEZE_PREFIX}{e.problem}\t{e.fix}", file=sys.stderr)
        sys.exit(3)
    except Exception as e:  # reported to the parent as the one-line reason
        print(f"{type(e).__name__}: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
