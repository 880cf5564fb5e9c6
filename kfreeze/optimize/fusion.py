"""How many convs and matmuls a TensorFlow session actually runs fused.

The file kfreeze writes holds only standard ops; at session creation TF's own
Grappler (the remapper) fuses ``Conv2D + BiasAdd (+ activation)`` into
``_FusedConv2D`` and the like. Whether it did is only visible in the graphs the
session executed: ``RunOptions(output_partition_graphs=True)`` returns them in
``RunMetadata.partition_graphs``. Those are counted here, not guessed from patterns.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from kfreeze import graphio
from kfreeze.errors import KfreezeError
from kfreeze.nodes import split_tensor
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

# What TF's remapper (or, with TF_ENABLE_ONEDNN_OPTS=1, oneDNN as _Mkl*) runs for a conv/matmul.
LINEAR_OPS = ("Conv2D", "DepthwiseConv2dNative", "MatMul")
FUSED_OPS = ("_FusedConv2D", "_FusedDepthwiseConv2dNative", "_FusedMatMul",
             "_MklFusedConv2D", "_MklFusedDepthwiseConv2dNative", "_MklFusedMatMul",
             "_MklNativeFusedConv2D", "_MklNativeFusedDepthwiseConv2dNative", "_MklNativeFusedMatMul")
BARE_OPS = LINEAR_OPS + tuple(f"_Mkl{op}" for op in LINEAR_OPS) + tuple(f"_MklNative{op}" for op in LINEAR_OPS)


def executed_graph(graph: graph_pb2.GraphDef, feeds: dict[str, np.ndarray], fetches: list[str],
                   threads: int = 1) -> graph_pb2.GraphDef:
    """The graph a ``tf.compat.v1.Session`` ran for ``fetches`` (tensor names, 'node:0'),
    after the session's own rewrites: its partition graphs, merged into one GraphDef."""
    from kfreeze import policy
    policy.check(graph, fetches, list(feeds))
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    options = tf.compat.v1.RunOptions(output_partition_graphs=True)
    metadata = tf.compat.v1.RunMetadata()
    with tf.Graph().as_default() as g:
        tf.graph_util.import_graph_def(graph, name="")
        with tf.compat.v1.Session(graph=g, config=config) as sess:
            sess.run(fetches, feed_dict=feeds, options=options, run_metadata=metadata)
    merged = graph_pb2.GraphDef()
    for part in metadata.partition_graphs:
        merged.node.extend(part.node)
    return merged


def runtime_fusion(graph: graph_pb2.GraphDef, feeds: dict[str, np.ndarray], fetches: list[str],
                   threads: int = 1) -> dict:
    """Conv/matmul ops a TF session executes fused vs bare, for ``graph`` fed ``feeds``.

    ``feeds``: tensor name ('input:0') -> value; ``fetches``: tensor names to run.
    Returns ``{"fused": n, "bare": n, "share": fused / (fused + bare) or None if there are
    none, "fused_ops": {op: n}, "bare_ops": {op: n}, "fused_with": {fused_ops attr: n},
    "bare_readers": {op: n}}``. ``fused_with`` names what each fusion absorbed, e.g.
    ``"BiasAdd,Relu"``; ``bare_readers`` the ops that read a bare conv/matmul (a BiasAdd
    there is a missed fusion; a ConcatV2 or AddV2, a conv with no bias to fuse).
    Measures under this process's TensorFlow settings: kfreeze's (ONEDNN_MAX_CPU_ISA=AVX2,
    TF_ENABLE_ONEDNN_OPTS=0 unless the environment sets it) when kfreeze was imported before
    TensorFlow; ``runtime_fusion_isolated`` picks the oneDNN setting.
    """
    executed = executed_graph(graph, feeds, fetches, threads)
    ops = Counter(n.op for n in executed.node)
    fused = {op: ops[op] for op in FUSED_OPS if ops[op]}
    bare = {op: ops[op] for op in BARE_OPS if ops[op]}
    with_ = Counter(",".join(a.decode() for a in n.attr["fused_ops"].list.s)
                    for n in executed.node if n.op in FUSED_OPS)
    bare_names = {n.name for n in executed.node if n.op in BARE_OPS}
    readers = Counter(n.op for n in executed.node
                      if any(split_tensor(i)[0] in bare_names for i in n.input if not i.startswith("^")))
    total = sum(fused.values()) + sum(bare.values())
    return {"fused": sum(fused.values()), "bare": sum(bare.values()),
            "share": sum(fused.values()) / total if total else None,
            "fused_ops": fused, "bare_ops": bare, "fused_with": dict(sorted(with_.items())),
            "bare_readers": dict(sorted(readers.items()))}


def runtime_fusion_isolated(graph_path: str | Path, feeds: dict[str, np.ndarray], fetches: list[str],
                            onednn: bool, threads: int = 1, timeout: float = 600) -> dict:
    """``runtime_fusion`` of the graph file in a fresh Python process, with oneDNN's TF rewrites
    on or off (``TF_ENABLE_ONEDNN_OPTS``). TensorFlow reads that switch once, when it loads,
    so a process cannot measure both; kfreeze turns it off for repeatable numbers, while TF
    turns it on by default on CPUs with AVX-512 VNNI, and only then fuses depthwise convs,
    swish and residual adds. ONEDNN_MAX_CPU_ISA stays kfreeze's (AVX2 unless KFREEZE_CPU_ISA)."""
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "feeds.npz"
        np.savez(arrays, *feeds.values())
        cmd = [sys.executable, "-m", "kfreeze.optimize.fusion", str(graph_path), str(arrays),
               json.dumps(list(feeds)), json.dumps(list(fetches)), str(threads)]
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1" if onednn else "0",
               "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1][:200]
        raise KfreezeError(str(graph_path), f"the fusion measurement failed ({last})",
                           "run it with runtime_fusion in this process to see the error")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _main(argv: list[str]) -> None:
    graph_path, arrays, names, fetches, threads = argv
    with np.load(arrays) as data:
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    feeds = dict(zip(json.loads(names), values))
    result = runtime_fusion(graphio.read_graph(graph_path), feeds, json.loads(fetches), int(threads))
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    _main(sys.argv[1:])
