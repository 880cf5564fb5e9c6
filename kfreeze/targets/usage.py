"""What ``kfreeze run`` prints for each sibling: the file, how to load it, the names and shapes to feed."""

from __future__ import annotations

import json
from pathlib import Path

from kfreeze.targets import EXTRA, FILES, SIGNATURE


def _shape(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def verify_note(metrics: dict) -> str:
    """What verify's line adds for the siblings: '; onnx max_rel_diff 1.2e-07 (OpenCV ...); tflite ...'."""
    parts = []
    for target, got in (metrics.get("targets") or {}).items():
        text = f"{target} max_rel_diff {got['max_rel_diff']:.3g}" if got.get("max_rel_diff") is not None else \
            f"{target} failed"
        if target == "onnx":
            text += (f" (OpenCV max_abs_diff {got['opencv_max_abs_diff']:.3g})" if got.get("opencv_error") is None
                     and got.get("opencv_max_abs_diff") is not None else " (OpenCV failed)")
        parts.append(text)
    return "".join(f"; {p}" for p in parts)


def usage_lines(out: Path, metrics: dict) -> list[str]:
    lines = []
    for target in EXTRA:
        sig_file = Path(out) / target / SIGNATURE
        if not sig_file.is_file():
            continue
        sig = json.loads(sig_file.read_text())
        if not sig.get("requested"):
            continue
        path = Path(out) / target / FILES[target]
        got = (metrics.get("targets") or {}).get(target, {})
        rel = got.get("max_rel_diff")
        if target == "onnx":
            lines.append(f"ONNX (onnxruntime.InferenceSession('{path}'); opset {sig['opset']}, "
                         f"4-D inputs {sig['layout']}):")
        else:
            lines.append(f"TFLite (ai_edge_litert.interpreter.Interpreter(model_path='{path}'); "
                         f"weights {sig['weights']}, inputs NHWC):")
        fed = ", ".join(f"'{i['name']}': {i['dtype']} {_shape(i['shape'])}" for i in sig["inputs"])
        fetched = [o["name"] for o in sig["outputs"]]
        if target == "onnx":
            lines.append(f"  session.run({fetched!r}, {{{fed}}})")
        else:
            lines.append(f"  get_input_details(): {fed.replace(': ', ' ')}; get_output_details(): "
                         + ", ".join(repr(o) for o in fetched))
        checked = f"  max_rel_diff {rel:.3g} against the source model" if rel is not None else "  not verified"
        if target == "onnx":
            checked += ("; OpenCV readNetFromONNX: " + (f"max_abs_diff {got['opencv_max_abs_diff']:.3g}"
                        if got.get("opencv_error") is None and got.get("opencv_max_abs_diff") is not None
                        else f"fails ({str(got.get('opencv_error'))[:120]})"))
        lines.append(checked)
    return lines
