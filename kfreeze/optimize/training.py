"""How a graph switches between training and inference: random ops and training flags.

Used by the passes that set flags to their inference values (``placeholder_defaults``),
strip dropout (``remove_dropout``) and refuse random ops (``check_portable``), and by
verify, which feeds the same flags when it runs the frozen graph.
"""

from __future__ import annotations

import re

import numpy as np

from kfreeze.nodes import split_tensor
from kfreeze.optimize.graph import consumers as find_consumers
from kfreeze.tfenv import tf
from tensorflow.core.framework import graph_pb2

RANDOM_OPS = re.compile(r"^(Random\w*|Stateless\w*(Random|Multinomial|TruncatedNormal|Shuffle)\w*|Stateful\w*|"
                        r"Multinomial|TruncatedNormal|ParameterizedTruncatedNormal|NonDeterministicInts|"
                        r"Rng\w*|\w*CandidateSampler|RandomIndexShuffle)$")
_UNIFORM = re.compile(r"^(RandomUniform|StatelessRandomUniform\w*|StatefulUniform)$")
# Names a mode flag goes by (Keras' learning phase, the TF1 idioms): such a bool, when it picks a
# branch, is the training switch whatever its branches hold and whatever its default.
MODE_FLAG = re.compile(r"^(.*/)?(keras_learning_phase|learning_phase|is_training|is_train|training|phase_train|"
                       r"train_mode|mode_training)(_\d+)?$", re.IGNORECASE)
_ARITH = {"Identity", "Snapshot", "Sub", "Add", "AddV2", "Mul", "RealDiv", "Div", "Cast", "Neg", "Reciprocal"}


def is_random_op(op: str) -> bool:
    """Ops whose value changes from run to run: none may stay in an inference graph."""
    return bool(RANDOM_OPS.match(op))


def _scalar_flag(node) -> bool:
    if node.op not in ("Placeholder", "PlaceholderWithDefault"):
        return False
    shape = node.attr["shape"].shape
    return shape.unknown_rank or len(shape.dim) == 0


def _evaluate(by_name, tensor: str, flag: str, value: float, depth: int = 0):
    """The scalar value of ``tensor`` when placeholder ``flag`` is ``value``: a small
    evaluator for the arithmetic between a keep_prob/rate placeholder and the dropout mask."""
    node = by_name.get(split_tensor(tensor)[0])
    if node is None or depth > 12:
        return None
    if node.name == flag:
        return value
    if node.op == "Const":
        v = tf.make_ndarray(node.attr["value"].tensor)
        return float(v.reshape(())) if v.size == 1 else None
    if node.op not in _ARITH:
        return None
    args = [_evaluate(by_name, i, flag, value, depth + 1) for i in node.input if not i.startswith("^")]
    if any(a is None for a in args) or not args:
        return None
    with np.errstate(all="ignore"):
        a = args[0]
        b = args[1] if len(args) > 1 else None
        return {"Identity": a, "Snapshot": a, "Cast": a, "Neg": -a if a is not None else None,
                "Reciprocal": (1.0 / a) if a else None, "Sub": a - b if b is not None else None,
                "Add": a + b if b is not None else None, "AddV2": a + b if b is not None else None,
                "Mul": a * b if b is not None else None,
                "RealDiv": a / b if b else None, "Div": a / b if b else None}[node.op]


def from_uniform(by_name, tensor: str, depth: int = 0) -> bool:
    """``tensor`` (with ``by_name`` a node-by-name map) is a uniform [0, 1) draw, possibly through Identity (or * 1, + 0 forms)."""
    node = by_name.get(split_tensor(tensor)[0])
    if node is None or depth > 4:
        return False
    if _UNIFORM.match(node.op):
        return True
    return node.op in ("Identity", "Mul", "Add", "AddV2") and any(
        from_uniform(by_name, i, depth + 1) for i in node.input if not i.startswith("^"))


def training_flags(graph: graph_pb2.GraphDef) -> dict:
    """Placeholders that switch a graph into training mode, with their inference values,
    found by what they do rather than by name or default:

    - a float feeding the threshold of a dropout mask ``GreaterEqual(uniform, rate)``
      (tf.nn.dropout, TF >= 1.13) or the ``Floor(keep_prob + uniform)`` mask (TF < 1.13):
      the value (0 or 1) at which the mask keeps everything: rate 0, keep_prob 1;
    - a bool that selects, through a ``tf.cond`` Switch, a branch with a random op
      (Keras' learning phase, ``is_training`` around dropout), or a bool placeholder
      without a default that is a cond predicate (Keras 2's ``keras_learning_phase``): False.

    Their defaults do not matter: a ``placeholder_with_default(0.5)`` keep_prob is a
    training default, and a plain ``Placeholder`` has none.
    """
    by_name = {n.name: n for n in graph.node}
    flags = {n.name: n for n in graph.node if _scalar_flag(n)}
    if not flags:
        return {}
    found: dict = {}
    floats = [n for n in flags.values() if tf.as_dtype(n.attr["dtype"].type).is_floating]
    for node in graph.node:
        if node.op == "GreaterEqual" and len(node.input) >= 2 and from_uniform(by_name, node.input[0]):
            target, want = node.input[1], 0.0
        elif node.op == "Floor" and node.input:
            add = by_name.get(split_tensor(node.input[0])[0])
            if add is None or add.op not in ("Add", "AddV2") or len(add.input) != 2:
                continue
            a, b = add.input
            if from_uniform(by_name, a):
                target = b
            elif from_uniform(by_name, b):
                target = a
            else:
                continue
            want = 1.0
        else:
            continue
        for flag in floats:
            for value in (0.0, 1.0):
                got = _evaluate(by_name, target, flag.name, value)
                if got is not None and got == want:
                    found[flag.name] = value
                    break
    bools = [n for n in flags.values() if tf.as_dtype(n.attr["dtype"].type) == tf.bool and n.name not in found]
    if bools:
        consumers = {src: [(n.name, -1 if n.input[i].startswith("^") else split_tensor(n.input[i])[1])
                           for n, i in found] for src, found in find_consumers(graph).items()}
        for flag in bools:
            if _gates_random(flag.name, by_name, consumers):
                found[flag.name] = False
            elif flag.op == "Placeholder" and any(
                    by_name[user].op in ("Switch", "RefSwitch") and split_tensor(by_name[user].input[1])[0] == flag.name
                    for user, port in consumers.get(flag.name, []) if port >= 0):
                # Keras 2's learning phase: a bool placeholder without a default, the predicate
                # of the train/test conds (batch norm, dropout); left alone it must be fed.
                found[flag.name] = False
            elif MODE_FLAG.match(flag.name) and _picks_a_branch(flag.name, by_name, consumers):
                # keras_learning_phase = PlaceholderWithDefault(True) gating a cond with no random op
                # (a train-time-only computation): the inference value, not the default.
                found[flag.name] = False
    return found


def _picks_a_branch(flag: str, by_name, consumers) -> bool:
    """``flag`` (through Identity/LogicalNot) is a Switch predicate, a Select condition or an If's."""
    stack, seen = [flag], set()
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        for user, port in consumers.get(name, []):
            node = by_name[user]
            if port < 0:
                continue
            if node.op in ("Identity", "LogicalNot"):
                stack.append(user)
            elif (node.op in ("Switch", "RefSwitch") and split_tensor(node.input[1])[0] == name) or \
                    (node.op in ("Select", "SelectV2", "If", "StatelessIf") and split_tensor(node.input[0])[0] == name):
                return True
    return False


def _gates_random(flag: str, by_name, consumers) -> bool:
    """A random op runs only when ``flag`` is true: it lies in a Switch's true branch."""
    seen, stack = set(), [(flag, False)]
    while stack:
        name, true_branch = stack.pop()
        if (name, true_branch) in seen:
            continue
        seen.add((name, true_branch))
        node = by_name[name]
        if true_branch and is_random_op(node.op):
            return True
        if node.op in ("Merge", "RefMerge"):
            continue  # past the cond: both branches meet again
        for user, port in consumers.get(name, []):
            if node.op in ("Switch", "RefSwitch"):
                if port == 1:
                    stack.append((user, True))
                elif port == 0:
                    continue
                else:
                    stack.append((user, true_branch))
            else:
                stack.append((user, true_branch))
    return False

