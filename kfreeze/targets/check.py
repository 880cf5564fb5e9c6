"""Verify's part for the siblings: each requested target on verify's inputs, against the same reference.

ONNX Runtime runs model.onnx and the LiteRT interpreter model.tflite; each output must be within
``atol + rtol * max|reference|``, as optimized.pb's are. OpenCV's ``readNetFromONNX`` (in a child
process, as for the .pb) is recorded for model.onnx and, as for the .pb, does not decide.
"""

from __future__ import annotations

from pathlib import Path

from kfreeze import progress
from kfreeze import targets as targets_lib
from kfreeze.errors import KfreezeError

RUNTIMES = {"onnx": "ONNX Runtime", "tflite": "the LiteRT interpreter"}


def _run(target: str, data: bytes, feeds: dict, outputs: list[str], signature: dict) -> dict:
    if target == "onnx":
        from kfreeze.targets import onnx
        return onnx.run(data, feeds, outputs, signature["layout"])
    from kfreeze.targets import tflite
    return tflite.run(data, feeds, outputs)


def _ops(target: str, data: bytes) -> int:
    if target == "onnx":
        from kfreeze.targets import onnx
        return onnx.op_count(data)
    from kfreeze.targets import tflite
    return tflite.op_count(data)


def _summary(per_output: dict) -> dict:
    diffs = [v.get("max_abs_diff") for v in per_output.values()]
    rels = [v.get("rel_diff") for v in per_output.values()]
    return {"max_abs_diff": None if None in diffs else max(diffs, default=0.0),
            "max_rel_diff": None if None in rels else max(rels, default=0.0)}


def check_target(target: str, out: Path, feeds: dict, reference: dict, probability: dict, atol: float,
                 rtol: float, batch: int | None) -> tuple[dict, list[str]]:
    """(metrics, failures) for one target; each failure line names the target's file and the output."""
    from kfreeze.verify import compare, output_failures, run_batched

    path = targets_lib.model_file(out, target)
    signature = targets_lib.read_signature(out, target)
    label = f"target {target} ({target}/{path.name})"
    if not signature.get("requested") or not path.is_file():
        raise KfreezeError(path, f"{target} is in targets but {path.name} was not built",
                           f"run the {target} stage first (dvc repro)")
    data = path.read_bytes()
    outputs = list(reference)
    metrics = {"file": f"{target}/{path.name}", "bytes": len(data), "ops": None, "passed": False,
               **{k: signature.get(k) for k in ("opset", "layout", "weights") if k in signature}}
    try:
        metrics["ops"] = _ops(target, data)
        got = run_batched(lambda f: _run(target, data, f, outputs, signature), feeds, batch)
    except Exception as e:  # a file the runtime rejects is a failed target, said in one line
        reason = " ".join(str(e).split())[:300]
        metrics.update(max_abs_diff=None, max_rel_diff=None, error=reason, outputs={})
        return metrics, [f"{label}: {RUNTIMES[target]} cannot run it: {reason}"]
    per_output = compare(reference, got, probability, atol, rtol)
    failures = output_failures(per_output, f"{label}: ")
    metrics.update(passed=not failures, **_summary(per_output), outputs=per_output,
                   top1_agree={k: v["top1_agree"] for k, v in per_output.items()})
    if target == "onnx":
        metrics.update(_opencv(path, feeds, reference, probability, batch, signature["layout"]))
    return metrics, failures


def _opencv(path: Path, feeds: dict, reference: dict, probability: dict, batch, layout: str) -> dict:
    from kfreeze.verify import compare, run_opencv

    result = run_opencv(path, feeds, list(reference), batch, layout=layout)
    error = result.error
    if result.outputs is not None:
        cmp = compare(reference, result.outputs, probability)
        bad = {k: v.get("error") or "NaN or Inf in the output" for k, v in cmp.items()
               if v.get("error") or v.get("nonfinite")}
        if not bad:
            return {"opencv_max_abs_diff": _summary(cmp)["max_abs_diff"], "opencv_error": None}
        error = "; ".join(f"{k}: {v}" for k, v in bad.items())
    return {"opencv_max_abs_diff": None, "opencv_error": error}


def check_targets(spec, out: Path, feeds: dict, reference: dict, probability: dict, atol: float, rtol: float,
                  batch: int | None) -> tuple[dict, list[tuple[Path, str]]]:
    """{target: metrics} for the model's extra targets, and [(file, failure line)]."""
    metrics, failures = {}, []
    for target in spec.targets:
        if target in targets_lib.EXTRA:
            runtime = "ONNX Runtime and OpenCV dnn" if target == "onnx" else "the LiteRT interpreter"
            with progress.step(f"running {target}/{targets_lib.FILES[target]} in {runtime}"):
                metrics[target], lines = check_target(target, out, feeds, reference, probability, atol, rtol, batch)
            failures += [(targets_lib.model_file(out, target), line) for line in lines]
    return metrics, failures
