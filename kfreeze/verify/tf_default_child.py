"""Run a frozen graph as a deployed TensorFlow program would: TF's defaults, in a process of its own.

kfreeze pins its own processes (no oneDNN rewrites, one thread, no session Grappler); a user's
``tf.compat.v1.Session`` has oneDNN on and Grappler on. A graph can pass in the first and fail in
the second (a ConvLSTM2D loop: "Retval[0] does not have value"), so verify runs it here too.
Started with the environment cleared of kfreeze's switches; imports TensorFlow, not kfreeze.
Usage: python tf_default_child.py GRAPH.pb IN.npz OUT.npz OUTPUTS BATCH (OUTPUTS comma-separated
tensor names; BATCH 0 feeds all samples at once, N feeds N rows at a time).
"""

from __future__ import annotations

import sys

import numpy as np


def main(graph_path: str, inputs_path: str, outputs_path: str, outputs: str, batch: str) -> int:
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    with open(graph_path, "rb") as f:
        graph_def.ParseFromString(f.read())
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    feeds = dict(np.load(inputs_path))
    names = outputs.split(",")
    fetches = [_tensor(o) for o in names]
    parts = []
    with tf.compat.v1.Session(graph=g) as sess:
        if not int(batch):  # one run of every row (inputs with fixed batches of their own differ in rows)
            parts.append(sess.run(fetches, {_tensor(k): v for k, v in feeds.items()}))
        step = int(batch)
        n = len(next(iter(feeds.values()))) if step else 0  # batch 0 for no inputs or a scalar one
        for start in range(0, n, step or 1):
            chunk = {k: v[start:start + step] for k, v in feeds.items()}
            rows = len(next(iter(chunk.values())))
            if rows < step:  # a fixed-batch graph: pad by repeating rows, keep the rows fed
                chunk = {k: np.resize(v, (step, *v.shape[1:])) for k, v in chunk.items()}
            values = sess.run(fetches, {_tensor(k): v for k, v in chunk.items()})
            parts.append([np.asarray(v)[:rows] for v in values])
    # one run: its values as they are (a scalar output cannot be concatenated)
    np.savez(outputs_path, **{o: parts[0][i] if len(parts) == 1 else np.concatenate([p[i] for p in parts])
                              for i, o in enumerate(names)})
    return 0


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"



if __name__ == "__main__":
    from kfreeze.child import script_main  # no TensorFlow: kfreeze.child imports only the standard library
    script_main(main, sys.argv[1:6])
