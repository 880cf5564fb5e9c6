"""tf_keras' TFOpLambda in Keras 3: a TF function a tf.keras functional model calls on its tensors.

tf.keras records ``tf.nn.relu6(x)``, ``x * 2.0`` or ``x[:, 0]`` in a functional model as a TFOpLambda
(SlicingOpLambda) layer whose config holds only the function's API name (``nn.relu6``,
``__operators__.add``, ``__operators__.getitem``), no code. Keras 3 has no such layer; ``TFOp`` is it,
registered as ``kfreeze>TFOp`` so the canonical ``model.keras`` reloads in export.

Safety: a name is resolved only in the pure tensor-math namespaces and functions below. Any other
(``tf.io``, ``tf.random``, ``tf.py_function``...) is refused before anything is built, unless the
loading code runs inside ``trusting(True)`` (the model's ``trust_code``). The trust is never read from
the file: a crafted ``.keras`` cannot grant itself more.
"""

from __future__ import annotations

import contextlib
import threading

from kfreeze.errors import KfreezeError
from kfreeze.tfenv import tf  # noqa: F401  (configures TF before Keras)

import keras  # noqa: E402

TF_OP_CLASSES = ("TFOpLambda", "SlicingOpLambda")
NAMESPACES = ("math.", "nn.", "linalg.", "__operators__.", "image.resize", "signal.", "bitwise.")
FUNCTIONS = frozenset(
    "reshape concat stack unstack transpose expand_dims squeeze cast split gather gather_nd slice strided_slice "
    "tile pad where shape size rank ones_like zeros_like fill range clip_by_value einsum matmul identity "
    "stop_gradient reverse roll broadcast_to one_hot argmax argmin norm sort argsort repeat meshgrid "
    "boolean_mask ones zeros linspace convert_to_tensor abs add multiply subtract maximum minimum exp sqrt "
    "square sigmoid tanh reduce_sum reduce_mean reduce_max reduce_min reduce_prod cumsum truediv "
    "compat.v1.gather compat.v1.transpose compat.v1.squeeze compat.v1.shape compat.v1.size "
    "compat.v1.reduce_sum compat.v1.reduce_mean compat.v1.reduce_max compat.v1.expand_dims "
    "compat.v1.where compat.v1.pad compat.v1.concat compat.v1.clip_by_value".split())

_TRUST = threading.local()


@contextlib.contextmanager
def trusting(trust_code: bool):
    """Inside, ``TFOp`` resolves any TF function (the user's trust_code); outside, only tensor math."""
    saved = getattr(_TRUST, "on", False)
    _TRUST.on = bool(trust_code)
    try:
        yield
    finally:
        _TRUST.on = saved


def allowed(name: str) -> bool:
    return name in FUNCTIONS or name.startswith(NAMESPACES)


def tf_function(name, where, trust_code: bool | None = None):
    """The TF API function ``tf.<name>``, if kfreeze may call it (see the module docstring)."""
    from tensorflow.python.util import tf_export

    trusted = getattr(_TRUST, "on", False) if trust_code is None else trust_code
    if not isinstance(name, str) or (not trusted and not allowed(name)):
        raise KfreezeError(where, f"refused for safety: the model calls tf.{name}, which is not tensor math "
                           "kfreeze calls from a model file", "if you trust this file, set trust_code: true "
                           "in its params.yaml entry (kfreeze run: --trust-code)")
    function = tf_export.get_symbol_from_name(name)
    if function is None or not callable(function):
        raise KfreezeError(where, f"the model calls tf.{name}, which TensorFlow {tf.__version__} does not have",
                           "re-save the model with the TensorFlow it runs on")
    return function


def layer_config(cls: str, cfg: dict, where, trust_code: bool) -> dict:
    """A TFOpLambda / SlicingOpLambda config as ``TFOp``'s, its function checked."""
    tf_function(cfg.get("function"), where, trust_code)
    return {"name": cfg["name"], "function": cfg["function"], "slicing": cls == "SlicingOpLambda",
            "dtype": cfg.get("dtype") or "float32"}


def _dict_to_slice(x):
    """SlicingOpLambda stores ``x[1:3]`` as {"start": 1, "stop": 3, "step": None}."""
    if isinstance(x, dict) and set(x) == {"start", "stop", "step"}:
        return slice(x["start"], x["stop"], x["step"])
    if isinstance(x, (list, tuple)):
        return type(x)(_dict_to_slice(v) for v in x)
    return x


@keras.saving.register_keras_serializable(package="kfreeze")
class TFOp(keras.layers.Layer):
    """``tf.<function>(inputs, **kwargs)``: the first argument as called, the others by keyword, as
    tf_keras recorded them. The function is resolved by name only (``tf_function``)."""

    def __init__(self, function: str, slicing: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.function, self.slicing = function, bool(slicing)
        self._fn = tf_function(function, f"layer '{self.name}'")

    def call(self, inputs, **kwargs):
        kwargs.pop("name", None)
        if self.slicing:
            kwargs = {k: _dict_to_slice(v) for k, v in kwargs.items()}
        return self._fn(inputs, **kwargs)

    def get_config(self):
        return {**super().get_config(), "function": self.function, "slicing": self.slicing}
