"""Verify's part for the siblings: each requested target on verify's inputs, against the same reference.

Each target runs in its runtime (registry ``runtime``: ONNX Runtime for model.onnx, the LiteRT
interpreter for model.tflite...); each output must be within
``atol + rtol * max|reference|``, as optimized.pb's are. OpenCV's ``readNetFromONNX`` (in a child
process, as for the .pb) is recorded for model.onnx and, as for the .pb, does not decide.

``precision: int8`` (model.tflite only): the file is judged by ``verify.atol_int8``/``rtol_int8``
instead, and each probability output (softmax, sigmoid) must also agree on the top-1 class with the
reference for at least ``verify.top1_int8`` of the samples; metrics record the tolerances used.
"""

from __future__ import annotations

from pathlib import Path

from kfreeze import progress
from kfreeze import targets as targets_lib
from kfreeze.errors import KfreezeError


def summary(per_output: dict) -> dict:
    diffs = [v.get("max_abs_diff") for v in per_output.values()]
    rels = [v.get("rel_diff") for v in per_output.values()]
    return {"max_abs_diff": None if None in diffs else max(diffs, default=0.0),
            "max_rel_diff": None if None in rels else max(rels, default=0.0)}


def check_target(target: str, out: Path, feeds: dict, reference: dict, probability: dict, atol: float,
                 rtol: float, batch: int | None, top1: float | None = None) -> tuple[dict, list[str]]:
    """(metrics, failures) for one target; each failure line names the target's file and the output."""
    from kfreeze.verify import compare, output_failures, run_batched

    entry = targets_lib.get(target)
    module = entry.load()
    path = targets_lib.model_file(out, target)
    signature = targets_lib.read_signature(out, target)
    label = f"target {target} ({target}/{path.name})"
    if not signature.get("requested") or not path.is_file():
        raise KfreezeError(path, f"{target} is in targets but {path.name} was not built",
                           f"run the {target} stage first (dvc repro)")
    data = path.read_bytes()
    outputs = list(reference)
    metrics = {"file": f"{target}/{path.name}", "bytes": len(data), "ops": None, "passed": False,
               **{k: signature.get(k) for k in ("opset", "layout", "weights", "calibration_samples",
                                               "calibration_held_out", "float_ops") if k in signature}}
    try:
        metrics["ops"] = module.op_count(data)
        got = run_batched(lambda f: module.run_folder(path.parent, f, outputs, signature), feeds, batch)
    except Exception as e:  # a file the runtime rejects is a failed target, said in one line
        reason = " ".join(str(e).split())[:300]
        metrics.update(max_abs_diff=None, max_rel_diff=None, error=reason, outputs={})
        return metrics, [f"{label}: {entry.runtime} cannot run it: {reason}"]
    per_output = compare(reference, got, probability, atol, rtol)
    failures = output_failures(per_output, f"{label}: ")
    if top1 is not None:  # int8: the class must survive quantization, not only the scores' scale
        metrics.update(top1_required=top1)
        failures += [f"{label}: output '{k}' agrees with the source model's top-1 class on {v['top1_agree']:.3g} "
                     f"of the samples, less than verify.top1_int8 = {top1:g}"
                     for k, v in per_output.items() if v.get("top1_agree") is not None and v["top1_agree"] < top1]
    metrics.update(passed=not failures, **summary(per_output), outputs=per_output, atol_used=atol, rtol_used=rtol,
                   top1_agree={k: v["top1_agree"] for k, v in per_output.items()})
    if hasattr(module, "extra_check"):  # recorded beside the verdict (OpenCV for model.onnx)
        metrics.update(module.extra_check(path, feeds, reference, probability, batch, signature))
    return metrics, failures


def check_targets(spec, out: Path, feeds: dict, reference: dict, probability: dict, atol: float, rtol: float,
                  batch: int | None, vspec=None) -> tuple[dict, list[tuple[Path, str]]]:
    """{target: metrics} for the model's extra targets, and [(file, failure line)]; with ``precision: int8``
    a target that reads precision (tflite) is judged by ``vspec``'s int8 tolerances and top-1 floor."""
    metrics, failures = {}, []
    for target in spec.targets:
        if target in targets_lib.EXTRA:
            entry = targets_lib.get(target)
            also = getattr(entry.load(), "EXTRA_RUNTIME", None)  # what extra_check runs (OpenCV for onnx)
            runtime = entry.runtime + (f" and {also}" if also else "")
            tol = (atol, rtol, None)
            if spec.precision == "int8" and "precision" in entry.reads and vspec is not None:
                tol = (vspec.atol_int8, vspec.rtol_int8, vspec.top1_int8)
            with progress.step(f"running {target}/{entry.file} in {runtime}"):
                metrics[target], lines = check_target(target, out, feeds, reference, probability, *tol[:2], batch,
                                                      tol[2])
            failures += [(targets_lib.model_file(out, target), line) for line in lines]
    return metrics, failures
