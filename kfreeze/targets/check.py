"""Verify's part for the siblings: each requested target on verify's inputs, against the same reference.

Each target runs in its runtime (registry ``runtime``: ONNX Runtime for model.onnx, the LiteRT
interpreter for model.tflite...); each output must be within
``atol + rtol * max|reference|``, as optimized.pb's are. OpenCV's ``readNetFromONNX`` (in a child
process, as for the .pb) is recorded for model.onnx and, as for the .pb, does not decide.

``precision: int8`` (model.tflite only): the file is judged by ``verify.atol_int8``/``rtol_int8``
instead, and each probability output (softmax, sigmoid) must also agree on the top-1 class with the
reference for at least ``verify.top1_int8`` of the samples; metrics record the tolerances used.

A sibling whose batch is dynamic (every input's first dimension ``None`` in signature.json) is also run
once at another batch size than verify's (1, or 2 when verify fed one sample at a time), on the first
rows, and must give what it gave for them at verify's batch, within the same tolerances (``other_batch``
in the metrics): Keras' own exporters' tests run a file at a batch it was not traced with, and a
deployment feeds whatever batch it has, while verify feeds one.
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
    samples = len(next(iter(feeds.values())))
    other = other_batch(signature, batch or samples, samples)
    if other is not None and not failures:  # a sibling that already failed is not run again
        metrics["other_batch"], lines = _at_other_batch(module, path, feeds, got, outputs, signature, other,
                                                        batch or samples, atol, rtol, label)
        failures += lines
        metrics["passed"] = not failures
    if hasattr(module, "extra_check"):  # recorded beside the verdict (OpenCV for model.onnx)
        metrics.update(module.extra_check(path, feeds, reference, probability, batch, signature))
    return metrics, failures


def other_batch(signature: dict, ran_at: int, samples: int) -> int | None:
    """The batch size to run a dynamic-batch sibling at besides verify's ``ran_at``: 1, or 2 when verify
    fed one sample at a time; None for a fixed batch, or when there are too few samples."""
    inputs = signature.get("inputs") or []
    if not inputs or any(not i.get("shape") or i["shape"][0] is not None for i in inputs):
        return None
    other = 1 if ran_at > 1 else 2
    return other if other <= samples else None


def _at_other_batch(module, path: Path, feeds: dict, got: dict, outputs: list[str], signature: dict, other: int,
                    ran_at: int, atol: float, rtol: float, label: str) -> tuple[dict, list[str]]:
    """(metrics, failures): the sibling on the first ``other`` rows against its own outputs for them at verify's
    batch ``ran_at``."""
    from kfreeze.verify import compare

    rows = {k: v[:other] for k, v in feeds.items()}
    prefix = f"{label}: at batch {other} (its batch is dynamic; verify ran it at {ran_at}): "
    try:
        again = module.run_folder(path.parent, rows, outputs, signature)
    except Exception as e:  # a runtime that cannot resize is a failed target too, in one line
        reason = " ".join(str(e).split())[:300]
        return {"batch": other, "passed": False, "max_abs_diff": None, "error": reason}, [f"{prefix}{reason}"]
    same = compare({o: got[o][:other] for o in outputs}, again, None, atol, rtol)
    failures = []
    for name, v in same.items():
        if v.get("error") or v.get("nonfinite"):
            problem = v.get("error") or "NaN or Inf at one batch size and not at the other"
            failures.append(f"{prefix}output '{name}': {problem}")
        elif not v["passed"]:
            failures.append(f"{prefix}output '{name}' differs from the same file's at batch {ran_at} by "
                            f"{v['max_abs_diff']:.3g}, more than atol + rtol * max|output| = {v['tolerance']:.3g}")
    return {"batch": other, "passed": not failures, "max_abs_diff": summary(same)["max_abs_diff"]}, failures


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
