"""The op policy: what the outputs depend on, through data and control edges and function bodies."""

from __future__ import annotations

import pytest

from kfreeze import policy
from kfreeze.params import Origin
from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf


def graph_with(kind: str, target: str = "/nonexistent/pwned"):
    """x -> y = 2x, with a hostile op attached in one of the ways a graph can hide it."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 3], name="x")
        if kind == "control":
            w = tf.io.write_file(target, "pwned", name="evil")
            with tf.control_dependencies([w]):
                y = tf.identity(x * 2.0, name="y")
        elif kind == "read":
            n = tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname", name="evil")), tf.float32)
            y = tf.identity(x * n, name="y")
        elif kind == "pyfunc":
            z = tf.compat.v1.py_func(lambda a: a, [x], tf.float32, name="evil")
            y = tf.identity(tf.reshape(z, [-1, 3]), name="y")
        elif kind == "function":
            @tf.function
            def double(a):
                tf.io.write_file(target, "pwned")
                return a * 2.0
            y = tf.identity(double(x), name="y")
        elif kind == "unused":  # the hostile op feeds nothing the output needs
            tf.io.write_file(target, "pwned", name="evil")
            y = tf.identity(x * 2.0, name="y")
        elif kind == "upstream_of_cut":  # a file read before the input: cut away, never run
            raw = tf.io.read_file("/etc/hostname", name="evil")
            x2 = tf.identity(tf.fill([1, 3], tf.cast(tf.strings.length(raw), tf.float32)), name="cut")
            y = tf.identity(x2 * 2.0, name="y")
    return g.as_graph_def()


@pytest.mark.parametrize("kind, op", [("control", "WriteFile"), ("read", "ReadFile"), ("pyfunc", "PyFunc"),
                                      ("function", "WriteFile")])
def test_hostile_op_is_refused_with_op_and_node(kind, op):
    with pytest.raises(KfreezeError) as e:
        policy.check(graph_with(kind), ["y"], ["x"], "g.pbtxt", Origin.project("graphs", "m"))
    line = e.value.line()
    assert f"a {op} op" in line and "graphs.m.trust_code: true" in line and "node '" in line


def test_trust_code_and_unused_or_cut_ops_pass():
    policy.check(graph_with("control"), ["y"], ["x"], trust_code=True)
    policy.check(graph_with("unused"), ["y"], ["x"])
    policy.check(graph_with("upstream_of_cut"), ["y"], ["cut"])
    with pytest.raises(KfreezeError, match="ReadFile"):
        policy.check(graph_with("upstream_of_cut"), ["y"], [])


def test_variable_with_a_control_input_is_walked():
    """Restoring a variable (freeze, verify's reference) runs its control inputs too."""
    g = tf.Graph()
    with g.as_default():
        tf.io.write_file("/nonexistent/pwned", "x", name="evil")
        tf.compat.v1.Variable(tf.zeros([3]), name="v", use_resource=False)
        x = tf.compat.v1.placeholder(tf.float32, [3], name="x")
        tf.identity(x, name="y")
    graph = g.as_graph_def()
    policy.check(graph, ["y"], ["x"])
    next(n for n in graph.node if n.name == "v").input.append("^evil")
    with pytest.raises(KfreezeError, match="WriteFile"):
        policy.check(graph, ["y"], ["x"])


def test_reasons():
    assert policy.reason("WriteFile") == "touches files"
    assert policy.reason("EagerPyFunc") == "runs Python code"
    assert policy.reason("TFRecordDataset") == "reads an input pipeline or talks to another process"
    assert {"WriteFile", "ReadFile", "PyFunc", "SaveV2", "RestoreV2", "MatchingFiles", "PrintV2"}.isdisjoint(policy.ALLOWED)


def test_a_function_named_only_inside_an_attr_is_walked():
    """``PartitionedCall f=outer[inner_fn=evil]``: 'evil' is bound to a placeholder that 'outer' calls."""
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef()
    graph.node.add(name="x", op="Placeholder").attr["dtype"].type = 1
    call = graph.node.add(name="y", op="PartitionedCall", input=["x"])
    call.attr["f"].func.name = "outer"
    call.attr["f"].func.attr["inner_fn"].func.name = "evil"
    outer = graph.library.function.add()
    outer.signature.name = "outer"
    outer.node_def.add(name="id", op="Identity")
    evil = graph.library.function.add()
    evil.signature.name = "evil"
    evil.node_def.add(name="w", op="WriteFile")
    with pytest.raises(KfreezeError, match="a WriteFile op"):
        policy.check(graph, ["y"], ["x"])
    del call.attr["f"].func.attr["inner_fn"]
    policy.check(graph, ["y"], ["x"])  # the same graph without the binding passes


# Where kfreeze hands a TF graph to something that runs it, and how the op policy covers that place:
# the function itself calls policy.check, or (named here) the only callers do before calling it.
EXECUTION_SITES = {
    ("kfreeze/verify/run.py", "graph_session"): "itself",
    ("kfreeze/verify/run.py", "run_checkpoint_graph"): "itself",
    ("kfreeze/optimize/fusion.py", "executed_graph"): "itself",
    ("kfreeze/optimize/graph.py", "region_runner"): "itself",
    ("kfreeze/optimize/passes/opencv_upsampling.py", "_run_chain"): "itself",
    ("kfreeze/targets/onnx.py", "convert"): ("kfreeze/targets/__init__.py", "build"),
    ("kfreeze/targets/tflite.py", "convert"): ("kfreeze/targets/__init__.py", "build"),
    ("kfreeze/targets/openvino.py", "convert"): ("kfreeze/targets/__init__.py", "build"),
    ("kfreeze/targets/saved_model.py", "_module"): ("kfreeze/targets/__init__.py", "build"),
    ("kfreeze/freeze.py", "_restore_and_convert"): ("kfreeze/pipeline.py", "freeze"),
    ("kfreeze/verify/tf_default_child.py", "main"): ("kfreeze/verify/__init__.py", "verify_model"),
}
_RUNNERS = {"Session", "from_graph_def", "wrap_function", "import_graph_def_in_function", "from_function", "from_concrete_functions", "from_saved_model",
            "from_keras_model", "convert_model", "InteractiveSession"}


def _sites():
    """(file, enclosing function) of every call that starts a TF session or a converter in kfreeze/."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = set()
    for path in sorted((root / "kfreeze").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for call in ast.walk(func):
                if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in _RUNNERS:
                    found.add((str(path.relative_to(root)), func.name))
    return found, root


def _source_of(root, file, name):
    import ast
    tree = ast.parse((root / file).read_text())
    return next(ast.get_source_segment((root / file).read_text(), f) for f in ast.walk(tree)
                if isinstance(f, ast.FunctionDef) and f.name == name)


def test_every_graph_execution_goes_through_the_policy():
    """A new Session.run or converter call in kfreeze/ must be listed with how the policy covers it."""
    found, root = _sites()
    assert found <= set(EXECUTION_SITES), f"unlisted execution sites: {sorted(found - set(EXECUTION_SITES))}"
    for (file, name), cover in EXECUTION_SITES.items():
        checker = (file, name) if cover == "itself" else cover
        assert "policy.check(" in _source_of(root, *checker), (file, name, checker)
