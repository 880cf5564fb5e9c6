"""What the passes need to know besides the graph: the cut points and the fetches."""

from __future__ import annotations

from dataclasses import dataclass

from kfreeze.nodes import split_tensor
from kfreeze.params import PRECISIONS  # the one definition (TF-free, like this module)


@dataclass(frozen=True)
class InputSpec:
    name: str                        # node or node:k where the graph is cut
    dtype: str | None = None         # None: the tensor's own dtype
    shape: tuple | None = None       # None: the tensor's own shape; -1/None for a dynamic dim




@dataclass(frozen=True)
class Context:
    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...]
    opencv: bool = False             # rewrite to forms OpenCV dnn imports (still valid TF, same outputs)
    precision: str = "float32"       # "float16": weights stored as float16 with a Cast to float32

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")

    @property
    def input_nodes(self) -> list[str]:
        return [placeholder_name(i.name) for i in self.inputs]

    @property
    def output_nodes(self) -> list[str]:
        return [split_tensor(o)[0] for o in self.outputs]


def placeholder_name(tensor: str) -> str:
    """The placeholder that replaces ``node:k``: ``node`` for k=0, else ``node_k``."""
    node, _, port = tensor.partition(":")
    return node if port in ("", "0") else f"{node}_{port}"
