"""kfreeze diff for the siblings: built on which side, same bytes or not, in a readable line."""

from __future__ import annotations

from kfreeze import targets
from kfreeze.compare import report
from kfreeze.compare.revisions import Revision
from kfreeze.compare.targets import compare_targets, target_lines
from tests.targets import graphs


def _workspace(root, graph, built):
    out = graph.write(root / "build" / "m")
    for target in targets.EXTRA:
        targets.write(out, target, targets.build(target, out, "here") if target in built else None)
    return Revision(root, None)


def test_targets_added_changed_and_same(tmp_path):
    a = _workspace(tmp_path / "a", graphs.dense(), ["onnx"])
    b = _workspace(tmp_path / "b", graphs.conv_two_heads(), ["onnx", "tflite"])
    result = compare_targets(a, b, "m")
    assert {t: e["status"] for t, e in result.items()} == {"onnx": "changed", "tflite": "added"}
    lines = target_lines(result)
    assert lines[0].startswith(f"onnx: model.onnx changed, {result['onnx']['a']['bytes']} -> ")
    assert lines[0].endswith("; inputs/outputs changed") and lines[1].startswith("tflite: model.tflite added (")
    assert compare_targets(a, a, "m") == {"onnx": {"status": "same", "a": result["onnx"]["a"],
                                                    "b": result["onnx"]["a"]}}
    assert compare_targets(b, a, "m")["tflite"]["status"] == "removed"


def test_a_changed_target_is_in_the_report():
    entry = {"model": "m", "status": "changed", "equivalent": False, "size": {"a": {"ops": 3, "bytes": 9},
             "b": {"ops": 3, "bytes": 9}}, "signature": {"changes": []}, "ops": {}, "weights":
             {"changed": 0, "compared": 2, "reshaped": [], "max_abs_change": 0.0, "max_rel_change": 0.0},
             "nodes": {"added": [], "removed": [], "changed": []}, "drift": {"max_abs_diff": 0.0, "outputs": {}},
             "targets": {"tflite": {"status": "added", "a": None, "b": {"bytes": 700, "ops": 4}}}}
    text = report.as_text({"a": "v1", "b": "v2", "models": [entry]})
    assert "  tflite: model.tflite added (700 bytes, 4 ops)" in text.splitlines()
