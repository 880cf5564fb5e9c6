"""The peers tier's one way in: a graph or model written to disk as a user has it, fed through
``kfreeze run`` (typer's CliRunner on ``kfreeze.cli.app``), and the results read back.

A TF1 case is built by a function that makes its graph in the default ``tf.Graph``; the peer's
constant weights are ``tf.compat.v1.Variable``s here (kfreeze takes a graph + checkpoint, as
training leaves them), and the peer's constant input a placeholder. The checkpoint is written
with a ``tf.compat.v1.train.Saver``, the graph as ``graph.pbtxt``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
from typer.testing import CliRunner

from kfreeze.cli import app
from kfreeze.tfenv import tf


@dataclass
class Run:
    exit_code: int
    output: str
    out: Path
    graph: Optional[object] = None  # the optimized GraphDef, when written
    frozen: Optional[object] = None
    metrics: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def ops(self) -> list[str]:
        return [n.op for n in self.graph.node]

    def error_line(self) -> str:
        lines = [line for line in self.output.strip().splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def errors(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("error:")]

    def run(self, feeds: dict, fetches, graph=None):
        """Run the optimized graph (or ``graph``) with feeds/fetches by tensor name (no 'import/')."""
        gd = graph if graph is not None else self.graph
        with tf.Graph().as_default() as g:
            tf.import_graph_def(gd, name="import")
            with tf.compat.v1.Session(graph=g) as sess:
                single = isinstance(fetches, str)
                got = sess.run([f"import/{f}" for f in ([fetches] if single else fetches)],
                               {f"import/{k}": v for k, v in feeds.items()})
        return got[0] if single else got


def _read_graph(path: Path):
    if not path.is_file():
        return None
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString(path.read_bytes())
    return gd


def invoke(args: list, out: Path) -> Run:
    result = CliRunner().invoke(app, ["run", *map(str, args), "--out", str(out)])
    output = result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback
        output += "".join(traceback.format_exception(result.exception))
    metrics = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").is_file() else {}
    return Run(result.exit_code, output, out, _read_graph(out / "optimized.pb"), _read_graph(out / "frozen.pb"),
               metrics)


def flags(**kw) -> list:
    args = []
    for key, value in kw.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is False:
            args.append("--no-" + key.replace("_", "-"))
        else:
            args += [flag, value if isinstance(value, str) else json.dumps(value)]
    return args


def _session(g):
    """A session that places a node pinned to a missing device (a GPU) on the CPU, as training did."""
    return tf.compat.v1.Session(graph=g, config=tf.compat.v1.ConfigProto(allow_soft_placement=True))


def write_tf1(folder: Path, build: Callable[[], None], binary: bool = False,
              init: Optional[Callable] = None) -> tuple[Path, Path]:
    """Build the graph, initialize and save its variables; graph.pbtxt (or graph.pb) + model.ckpt-0."""
    folder.mkdir(parents=True, exist_ok=True)
    with tf.Graph().as_default() as g:
        build()
        saver = tf.compat.v1.train.Saver()
        with _session(g) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            if init is not None:
                init(sess)
            prefix = saver.save(sess, str(folder / "model.ckpt"), global_step=0, write_meta_graph=False)
        name = "graph.pb" if binary else "graph.pbtxt"
        tf.io.write_graph(g.as_graph_def(), str(folder), name, as_text=not binary)
    return folder / name, Path(prefix)


def run_tf1(tmp: Path, build: Callable[[], None], inputs, outputs, input_shape=None, binary=False,
            init=None, samples=2, **kw) -> Run:
    """``kfreeze run --graph G --checkpoint CKPT --inputs .. --outputs ..`` on the graph ``build`` makes."""
    graph, ckpt = write_tf1(tmp / "src", build, binary=binary, init=init)
    args = ["--graph", graph, "--checkpoint", ckpt, *flags(inputs=",".join(inputs), outputs=",".join(outputs))]
    if input_shape is not None:
        args += flags(input_shape=input_shape)
    args += flags(samples=samples, **kw)
    return invoke(args, tmp / "out")


def run_keras(tmp: Path, model, name: str = "model.keras", samples=2, **kw) -> Run:
    """``kfreeze run model.keras`` on a Keras 3 model saved as the user saves it."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    model.save(path)
    return invoke([path, *flags(samples=samples, **kw)], tmp / "out")


def var(value, name: str, dtype=np.float32):
    """A TF1 variable holding ``value`` (the peer's constant, now a weight in a checkpoint)."""
    return tf.compat.v1.Variable(np.asarray(value, dtype=dtype), name=name, use_resource=False)


def placeholder(name: str, shape, dtype=tf.float32):
    return tf.compat.v1.placeholder(dtype, shape, name=name)


def keras_ref(model, x):
    """The Keras model's own answer, for judging the optimized graph."""
    y = model(x) if not isinstance(x, dict) else model(x)
    if isinstance(y, (list, tuple)):
        return [np.asarray(t) for t in y]
    if isinstance(y, dict):
        return {k: np.asarray(v) for k, v in y.items()}
    return np.asarray(y)


# --- many peer cases in one kfreeze run ---------------------------------------------------------
# One `kfreeze run` costs 15-25 s here (two child processes each import TensorFlow), so a suite's
# cases that kfreeze takes in the same form are built side by side in one graph, each under its own
# name scope with its own input(s) and output(s), and run once (a module fixture). Each test then
# judges its own output: the value from the optimized graph against the source graph's, and the op
# types among that output's ancestors. A verify failure still leaves optimized.pb to judge.

@dataclass
class Case:
    name: str
    build: Callable[[], None]
    feeds: dict  # input node (in the scope) -> value fed (its shape is the --input-shape)
    outputs: list  # output nodes (in the scope)
    ref_feeds: dict = field(default_factory=dict)  # more feeds for the source graph's own answer only


class Batch:
    def __init__(self):
        self.cases: dict[str, Case] = {}
        self.run: Optional[Run] = None
        self.want: dict = {}

    def add(self, name: str, build, feeds: dict, outputs: list, ref_feeds: Optional[dict] = None) -> None:
        self.cases[name] = Case(name, build, feeds, outputs, ref_feeds or {})

    def _build_all(self):
        for case in self.cases.values():
            with tf.name_scope(case.name):
                case.build()

    def go(self, tmp: Path, **kw) -> "Batch":
        feeds = {f"{c.name}/{k}": v for c in self.cases.values() for k, v in c.feeds.items()}
        outputs = [f"{c.name}/{o}" for c in self.cases.values() for o in c.outputs]
        with tf.Graph().as_default() as g:
            self._build_all()
            with _session(g) as sess:
                sess.run(tf.compat.v1.global_variables_initializer())
                ref = {**feeds, **{f"{c.name}/{k}": v for c in self.cases.values() for k, v in c.ref_feeds.items()}}
                got = sess.run([o + ":0" for o in outputs], {k + ":0": v for k, v in ref.items()})
        self.want = dict(zip(outputs, got))
        graph, ckpt = write_tf1(tmp / "src", self._build_all)
        args = ["--graph", graph, "--checkpoint", ckpt,
                *flags(inputs=",".join(feeds), outputs=",".join(outputs),
                       input_shape={k: list(np.shape(v)) for k, v in feeds.items()}, samples=2, **kw)]
        self.run = invoke(args, tmp / "out")
        return self

    def output(self, case: str, output: Optional[str] = None):
        """The optimized graph's value of one case's output, fed the case's inputs."""
        c = self.cases[case]
        assert self.run.graph is not None, self.run.output
        name = f"{case}/{output or c.outputs[0]}"
        return self.run.run({f"{case}/{k}:0": v for k, v in c.feeds.items()}, name + ":0")

    def expected(self, case: str, output: Optional[str] = None):
        return self.want[f"{case}/{output or self.cases[case].outputs[0]}"]

    def ops(self, case: str) -> list[str]:
        """The op types that compute the case's outputs in the optimized graph."""
        assert self.run.graph is not None, self.run.output
        return ancestor_ops(self.run.graph, [f"{case}/{o}" for o in self.cases[case].outputs])


def ancestor_ops(graph, outputs) -> list[str]:
    nodes = {n.name: n for n in graph.node}
    seen, todo = set(), [o.split(":")[0] for o in outputs]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        todo += [i.lstrip("^").split(":")[0] for i in nodes[name].input]
    return sorted(nodes[n].op for n in seen)


# --- many Keras cases in one model ---------------------------------------------------------------

class KerasBatch:
    """Keras cases side by side in one functional model: case NAME has the input NAME_in and the
    output NAME_out (an Identity layer), so one ``kfreeze run model.keras`` judges them all."""

    def __init__(self, seed: int = 0):
        self.cases: dict = {}
        self.seed = seed
        self.run: Optional[Run] = None
        self.model = None

    def add(self, name: str, shape, fn, dtype="float32", low=0.0, high=1.0) -> None:
        self.cases[name] = (tuple(shape), fn, dtype, low, high)

    def feeds(self, batch: int = 2) -> dict:
        rng = np.random.default_rng(self.seed + 1)
        out = {}
        for name, (shape, _, dtype, low, high) in self.cases.items():
            if dtype.startswith("int"):
                out[name] = rng.integers(int(low), int(high), (batch, *shape)).astype(dtype)
            else:
                out[name] = rng.uniform(low, high, (batch, *shape)).astype(dtype)
        return out

    def go(self, tmp: Path, **kw) -> "KerasBatch":
        from kfreeze.keras_io import keras

        keras.utils.set_random_seed(self.seed)
        inputs, outputs = [], []
        for name, (shape, fn, dtype, _, _) in self.cases.items():
            inp = keras.Input(shape, name=f"{name}_in", dtype=dtype)
            inputs.append(inp)
            outputs.append(keras.layers.Identity(name=f"{name}_out")(fn(inp)))
        self.model = keras.Model(inputs, outputs, name="peers")
        _randomize(self.model, self.seed)
        self.run = run_keras(tmp, self.model, **kw)
        return self

    def output(self, case: str, batch: int = 2):
        assert self.run.graph is not None, self.run.output
        feeds = self.feeds(batch)
        return self.run.run({f"{case}_in:0": feeds[case]}, f"{case}_out:0")

    def expected(self, case: str, batch: int = 2):
        feeds = self.feeds(batch)
        got = self.model([feeds[c] for c in self.cases])
        return np.asarray(got[list(self.cases).index(case)])

    def ops(self, case: str) -> list[str]:
        assert self.run.graph is not None, self.run.output
        return ancestor_ops(self.run.graph, [f"{case}_out"])


def _randomize(model, seed: int) -> None:
    """Non-trivial batch-norm statistics and biases (fresh layers have zeros and ones)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for w in layer.weights:
            path = w.path
            if path.endswith(("moving_variance", "gamma")):
                w.assign(rng.uniform(0.5, 1.5, w.shape).astype(w.dtype))
            elif path.endswith(("moving_mean", "beta", "bias")):
                w.assign(rng.normal(0, 0.3, w.shape).astype(w.dtype))
