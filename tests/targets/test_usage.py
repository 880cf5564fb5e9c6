"""What kfreeze prints about the siblings: verify's line and kfreeze run's usage lines."""

from __future__ import annotations

import json

from kfreeze.targets.usage import usage_lines, verify_note

METRICS = {"targets": {"onnx": {"max_rel_diff": 1.25e-7, "opencv_max_abs_diff": 2e-6, "opencv_error": None},
                       "tflite": {"max_rel_diff": None, "error": "bad file"}}}


def test_verify_line_names_each_target():
    assert verify_note(METRICS) == "; onnx max_rel_diff 1.25e-07 (OpenCV max_abs_diff 2e-06); tflite failed"
    assert verify_note({"targets": {}}) == verify_note({}) == ""


def test_usage_lines_give_the_call_with_names_dtypes_and_shapes(tmp_path):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "signature.json").write_text(json.dumps({
        "requested": True, "opset": 17, "layout": "NCHW",
        "inputs": [{"name": "image", "dtype": "float32", "shape": [None, 3, 8, 8]}],
        "outputs": [{"name": "probs", "dtype": "float32", "shape": [None, 10]}]}))
    (tmp_path / "tflite").mkdir()
    (tmp_path / "tflite" / "signature.json").write_text(json.dumps({"requested": False}))
    lines = usage_lines(tmp_path, METRICS)
    assert lines == [f"ONNX (onnxruntime.InferenceSession('{tmp_path}/onnx/model.onnx'); opset 17, 4-D inputs NCHW):",
                     "  session.run(['probs'], {'image': float32 [?, 3, 8, 8]})",
                     "  max_rel_diff 1.25e-07 against the source model; OpenCV readNetFromONNX: max_abs_diff 2e-06"]
