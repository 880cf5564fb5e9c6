"""Recurrent models in the onnx and tflite targets (kfreeze/targets/recurrent.py): the 12 Keras recurrent
classes, each in a small model with a fixed number of time steps and randomized weights (zoo.randomize:
biases too), through every stage and verify, which checks each sibling against Keras' reference.

The 12: the layers SimpleRNN, LSTM, GRU, ConvLSTM1D, ConvLSTM2D, ConvLSTM3D; the generic RNN with each
cell class (SimpleRNNCell, LSTMCell, GRUCell) and with StackedRNNCells; the Bidirectional wrapper.
(TimeDistributed, also in keras.layers' rnn package, applies a layer per step without a recurrence
and freezes to no loop.)

``python -m tests.targets.test_recurrent`` prints the table docs/targets.md holds.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pytest

from tests.conformance import harness, zoo

L = zoo.L
keras = zoo.keras
T = 4  # time steps


def _model(name, layer, shape=(T, 3), head=True):
    inp = keras.Input(shape, name="seq")
    x = layer(inp)
    if head:
        x = L.Dense(2, name="out")(x)
    return keras.Model(inp, x, name=name)


CLASSES = {  # class -> a small model using it
    "SimpleRNN": lambda: _model("simple_rnn", L.SimpleRNN(4, name="rnn")),
    "LSTM": lambda: _model("lstm", L.LSTM(4, return_sequences=True, name="rnn")),
    "GRU": lambda: _model("gru", L.GRU(4, name="rnn")),
    "ConvLSTM1D": lambda: _model("conv_lstm1d", L.ConvLSTM1D(2, 3, padding="same", name="rnn"), (T, 6, 2), False),
    "ConvLSTM2D": lambda: _model("conv_lstm2d", L.ConvLSTM2D(2, 3, padding="same", name="rnn"), (T, 5, 5, 2), False),
    "ConvLSTM3D": lambda: _model("conv_lstm3d", L.ConvLSTM3D(2, 3, padding="same", name="rnn"), (T, 3, 3, 3, 1),
                                 False),
    "RNN(SimpleRNNCell)": lambda: _model("rnn_simple_cell", L.RNN(L.SimpleRNNCell(4), name="rnn")),
    "RNN(LSTMCell)": lambda: _model("rnn_lstm_cell", L.RNN(L.LSTMCell(4), return_sequences=True, name="rnn")),
    "RNN(GRUCell)": lambda: _model("rnn_gru_cell", L.RNN(L.GRUCell(4, reset_after=False), name="rnn")),
    "StackedRNNCells": lambda: _model("stacked", L.RNN(L.StackedRNNCells([L.LSTMCell(4), L.GRUCell(3)]), name="rnn")),
    "Bidirectional": lambda: _model("bidirectional", L.Bidirectional(L.LSTM(3, return_sequences=True), name="rnn")),
}


def _lstm_state():  # return_state: three outputs, two of them the loop's final states
    inp = keras.Input((T, 3), name="seq")
    seq, h, c = L.LSTM(4, return_sequences=True, return_state=True, name="rnn")(inp)
    return keras.Model(inp, [L.Dense(2, name="out")(seq), L.Identity(name="h")(h), L.Identity(name="c")(c)],
                       name="states")


def build(cls: str):
    keras.utils.set_random_seed(0)
    return zoo.randomize(CLASSES[cls]())


def measure(tmp, cls: str) -> dict:
    """Every stage with targets onnx and tflite, verify against Keras; per target ok/fail and rel error."""
    model = build(cls)
    run = harness.run_model(tmp, CLASSES[cls]().name, model, targets=("onnx", "tflite"))
    ref = run.reference
    spread = max(float(np.std(v, axis=0).max()) for v in ref.values())  # outputs vary with the input
    row = {"class": cls, "tf_rel": run.rel_err, "spread": spread}
    for target in ("onnx", "tflite"):
        got = run.targets.get(target)
        row[target] = ({"ok": bool(got["passed"]), "rel": got["max_rel_diff"],
                        "from": json.loads((run.build / target / "signature.json").read_text()).get("converted_from")}
                       if got else {"ok": False, "error": run.target_errors.get(target)})
    row["run"] = run
    return row


@pytest.mark.slow
@pytest.mark.matrix
@pytest.mark.parametrize("cls", sorted(CLASSES))
def test_each_recurrent_class_gets_verified_onnx_and_tflite(tmp_path, cls):
    row = measure(tmp_path, cls)
    assert row["spread"] > 1e-3, row  # outputs that depend on the input
    for target in ("onnx", "tflite"):
        assert row[target]["ok"] and row[target]["rel"] < 1e-5, (target, row[target])
        assert row[target]["from"] and "unroll" in row[target]["from"]


def _all_in_one():
    """Every class in one model: four inputs (a sequence and the three ConvLSTM shapes), one output each."""
    seq = keras.Input((T, 3), name="seq")
    c1, c2, c3 = (keras.Input((T, 6, 2), name="seq1d"), keras.Input((T, 5, 5, 2), name="seq2d"),
                  keras.Input((T, 3, 3, 3, 1), name="seq3d"))
    outs = []
    for cls, make in CLASSES.items():
        layer = make().get_layer("rnn")
        inp = {"ConvLSTM1D": c1, "ConvLSTM2D": c2, "ConvLSTM3D": c3}.get(cls, seq)
        config = {**layer.get_config(), "name": f"rnn{len(outs)}"}
        outs.append(L.Identity(name=cls.replace("(", "_").replace(")", "").lower())(
            layer.__class__.from_config(config)(inp)))
    return keras.Model([seq, c1, c2, c3], outs, name="all_rnn")


@pytest.mark.slow
@pytest.mark.matrix
def test_every_class_in_one_model(tmp_path):
    """The 11 models' layers side by side in one model (4 inputs, 11 outputs): both siblings verified."""
    keras.utils.set_random_seed(0)
    model = zoo.randomize(_all_in_one())
    run = harness.run_model(tmp_path, "all_rnn", model, targets=("onnx", "tflite"))
    assert run.target_errors == {}, run.target_errors
    for target in ("onnx", "tflite"):
        assert run.targets[target]["passed"] and run.targets[target]["max_rel_diff"] < 1e-5, run.targets[target]
    assert all(float(np.std(v, axis=0).max()) > 1e-3 for v in run.reference.values())
    # the same bytes from a fresh process with another hash seed (as a DVC stage converts): two of the
    # layers have equal biases, which tf2onnx merges under either name (onnx.stable_order)
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys\nfrom pathlib import Path\nfrom kfreeze import targets\nb = Path(sys.argv[1])\n"
            "for t in ('onnx', 'tflite'):\n"
            "    print(targets.build(t, b, 'w').data == (b / t / targets.FILES[t]).read_bytes())\n")
    import kfreeze
    root = str(Path(kfreeze.__file__).parent.parent)  # this checkout's kfreeze, whatever is installed
    env = {**os.environ, "PYTHONHASHSEED": "7", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    got = subprocess.run([sys.executable, "-c", code, str(run.build)], env=env, capture_output=True, timeout=300)
    assert got.stdout.split() == [b"True", b"True"], got.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.matrix
def test_names_shapes_and_bytes(tmp_path):
    """Same input and output names and shapes as optimized.pb (three outputs, two of them loop states);
    the same bytes when converted again in the same process; a tampered sibling fails verify."""
    from kfreeze import graphio
    from kfreeze.errors import KfreezeError
    from kfreeze.verify import placeholder_infos

    keras.utils.set_random_seed(0)
    model = zoo.randomize(_lstm_state())
    run = harness.run_model(tmp_path, "states", model, targets=("onnx", "tflite"))
    assert run.target_errors == {} and run.metrics["passed"], (run.target_errors, run.metrics.get("failures"))
    names = json.loads((run.build / "names.json").read_text())
    optimized = graphio.read_graph(run.build / "optimized.pb")
    shape = list(placeholder_infos(optimized, names["inputs"])[0].shape)
    for target in ("onnx", "tflite"):
        assert run.targets[target]["passed"] and run.targets[target]["max_rel_diff"] < 1e-5
        sig = json.loads((run.build / target / "signature.json").read_text())
        assert [i["name"] for i in sig["inputs"]] == names["inputs"] == ["seq"]
        assert [i["shape"] for i in sig["inputs"]] == [shape]
        assert sorted(o["name"] for o in sig["outputs"]) == sorted(names["outputs"]) == ["c", "h", "out"]
    from kfreeze import targets
    first = {t: (run.build / t / targets.FILES[t]).read_bytes() for t in ("onnx", "tflite")}
    for t in ("onnx", "tflite"):
        assert targets.build(t, run.build, "w").data == first[t], t
    # negative control: the ONNX sibling's largest weight scaled by 1.5 fails verify, naming the target
    import onnx
    from onnx import numpy_helper
    m = onnx.load_from_string(first["onnx"])
    big = max(m.graph.initializer, key=lambda t: np.abs(numpy_helper.to_array(t)).max() if t.data_type == 1 else 0)
    big.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(big) * 1.5, big.name))
    (run.build / "onnx" / "model.onnx").write_bytes(m.SerializeToString())
    with pytest.raises(KfreezeError):
        harness.run_stages(run.project, "states", ("verify",))
    failed = json.loads((run.build / "verify_failed.json").read_text())
    assert any(f.startswith("target onnx (onnx/model.onnx)") for f in failed["failures"]), failed


@pytest.mark.slow
def test_graph_entry_with_a_loop_is_refused_in_one_line(tmp_path):
    """No model.keras (a 'graphs:' entry): the converters get the loop as before, and their refusal names
    the loop op and the targets that convert it."""
    from kfreeze import graphio, targets
    from kfreeze.errors import KfreezeError
    from kfreeze.targets import recurrent

    project = harness.write_project(tmp_path / "p", "lstm", build("LSTM"), ".keras", targets=["tf"])
    harness.run_stages(project, "lstm", harness.STAGES[:4])  # convert .. optimize: a real optimized.pb
    graph = graphio.read_graph(project / "build" / "lstm" / "optimized.pb")
    names = graphio.read_json(project / "build" / "lstm" / "names.json")
    out = names["outputs"][0]
    assert recurrent.loop_op(graph) == "TensorListReserve"
    graphio.write_graph(graph, tmp_path / "optimized.pb")  # beside no model/model.keras
    graphio.write_json(tmp_path / "names.json", names)
    for target in ("onnx", "tflite"):
        with pytest.raises(KfreezeError) as e:
            targets.build(target, tmp_path, "params.yaml: graphs.g.targets")
        line = str(e.value)
        assert "TensorListReserve" in line and "openvino" in line and "saved_model" in line, line
    with pytest.raises(KfreezeError) as e:  # called without a model: says so in one line
        recurrent.unrolled_graph(tmp_path, graph, ["seq"], [out], "onnx", "w")
    assert "TensorListReserve" in str(e.value) and "model.keras does not exist" in str(e.value)


def direct(build) -> dict:
    """Before recurrent.py: each converter on optimized.pb itself (ok, or the refusal's op)."""
    from kfreeze import graphio
    from kfreeze.errors import KfreezeError
    from kfreeze.optimize.context import placeholder_name
    from kfreeze.targets import get

    names = graphio.read_json(build / "names.json")
    graph = graphio.read_graph(build / "optimized.pb")
    got = {}
    for target in ("onnx", "tflite"):
        try:
            get(target).load().build(graph, [placeholder_name(i) for i in names["inputs"]], names["outputs"], "w")
            got[target] = "converts"
        except KfreezeError as e:
            got[target] = "fails: " + e.problem[:90]
    return got


def main() -> None:
    import tempfile
    from pathlib import Path

    rows = []
    for cls in CLASSES:
        start = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            row = measure(Path(tmp), cls)
            row["direct"] = direct(row["run"].build)
        row.pop("run")
        row["seconds"] = round(time.time() - start, 1)
        rows.append(row)
        print(json.dumps(row, default=str), file=sys.stderr, flush=True)
    cell = lambda r: f"ok, rel {r['rel']:.1e}" if r["ok"] else f"fails: {r.get('error') or r.get('rel')}"  # noqa: E731
    print("| class | onnx | tflite | optimized.pb (TF) vs Keras | before: tf2onnx on optimized.pb "
          "| before: TFLite on optimized.pb |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['class']} | {cell(r['onnx'])} | {cell(r['tflite'])} | rel {r['tf_rel']:.1e} | "
              f"{r['direct']['onnx']} | {r['direct']['tflite']} |")


if __name__ == "__main__":
    main()
