"""Run a frozen graph in OpenCV dnn, in its own process.

OpenCV 5.0 segfaults on some TensorFlow graphs; in a child process a crash is a
recorded result, not a dead stage. Usage: python -m kfreeze.verify.opencv_child
GRAPH.pb IN.npz OUT.npz INPUT_NAMES OUTPUTS BATCH [LAYOUT] (comma-separated; an output is
'a|b', the first layer name the network has, fetched with net.forward and
saved under ':layers'; arrays NHWC; BATCH 0 runs all samples at once, N runs N at
a time for a fixed-batch graph; LAYOUT, optional: NHWC for an .onnx file that
takes NHWC as it is).
"""

from __future__ import annotations

import sys

import numpy as np


def main(graph: str, inputs_path: str, outputs_path: str, input_names: str, output_names: str,
         batch: str = "0", layout: str = "NCHW") -> int:
    import cv2

    # An .onnx file (kfreeze.targets) goes to the ONNX importer; its layout says whether it takes NCHW.
    net = cv2.dnn.readNetFromONNX(graph) if graph.endswith(".onnx") else cv2.dnn.readNetFromTensorflow(graph)
    nchw = layout == "NCHW"
    feeds = dict(np.load(inputs_path))
    names_in, wanted = input_names.split(","), output_names.split(",")
    layers = set(net.getLayerNames())
    names_out = []
    for w in wanted:
        found = next((c for c in w.split("|") if c in layers), None)
        if found is None:
            raise ValueError(f"OpenCV's network has no layer named {' or '.join(repr(c) for c in w.split('|'))}")
        names_out.append(found)
    n = len(feeds[names_in[0]])
    step = int(batch) or max(len(v) for v in feeds.values())  # 0: every row of every input at once
    parts = []
    for start in range(0, n, step):
        for name in names_in:
            x = feeds[name][start:start + step]
            # OpenCV's importer turns NHWC graphs into NCHW layers (NDHWC into NCDHW): feed it that.
            blob = x.transpose(0, 3, 1, 2) if x.ndim == 4 and nchw else \
                x.transpose(0, 4, 1, 2, 3) if x.ndim == 5 and nchw else x
            net.setInput(np.ascontiguousarray(blob), name if len(names_in) > 1 else "")
        results = net.forward(names_out)
        parts.append([y.transpose(0, 2, 3, 1) if y.ndim == 4 and nchw else
                      y.transpose(0, 2, 3, 4, 1) if y.ndim == 5 and nchw else y for y in results])
    arrays = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(wanted)}
    np.savez(outputs_path, **arrays, **{":layers": np.array(names_out)})  # run.LAYERS_KEY
    return 0



if __name__ == "__main__":
    from kfreeze.child import script_main  # no TensorFlow: kfreeze.child imports only the standard library
    script_main(main, sys.argv[1:8])
