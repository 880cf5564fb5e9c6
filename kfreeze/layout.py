"""What a model's build folder holds, and the pipeline's stages as one table.

``build/<name>/`` (and ``kfreeze run``'s --out, which holds the same) is spelled here and nowhere
else: the steps, ``kfreeze run``, verify and the stage table take these names. ``STAGES`` says what
each stage reads and writes in that folder; ``dvc.yaml`` is generated from it
(``python -m kfreeze.layout > dvc.yaml``), and a test holds the committed file to it.
"""

from __future__ import annotations

from dataclasses import dataclass

# build/<name>/
MODEL = "model"  # convert: the canonical model.keras
MODEL_FILE = "model/model.keras"
CKPT = "ckpt"  # export: the TF checkpoint...
GRAPH = "graph.pbtxt"  # ...the inference graph freeze_graph takes with it
OP_NAMES = "op_names.txt"
SIGNATURE = "signature.json"  # inputs, outputs, their shapes and dtypes
FROZEN = "frozen.pb"  # freeze
NAMES = "names.json"  # the input and output nodes freeze resolved
OPTIMIZED = "optimized.pb"  # optimize
PASSES = "passes.json"  # each pass's op counts
FAILED = "verify_failed.json"  # a failed verify's report (no metrics then)
SETTINGS = "settings"  # build/settings/<name>/<stage>.json: what resolve wrote for each stage
CODE = "kfreeze.json"  # build/settings/kfreeze.json: resolve's hash of the kfreeze package (no name has a dot)
METRICS = "metrics.json"  # kfreeze run's copy of metrics/<name>.json


@dataclass(frozen=True)
class Stage:
    """One per-model DVC stage: its script, what it reads and writes in build/<name>/.

    ``tf1_reads``: what its 'graphs:' copy (``<name>_tf1``) reads instead, when it differs.
    ``notes``: a comment for a dependency, written into dvc.yaml."""
    name: str
    script: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    keras_only: bool = False
    tf1_reads: tuple[str, ...] | None = None
    metrics: bool = False
    notes: tuple[tuple[str, str], ...] = ()


def _stages() -> tuple[Stage, ...]:
    from kfreeze.targets.registry import REGISTRY

    unrolled = (("model", "a recurrent model is converted unrolled from model.keras"),)
    targets = tuple(
        Stage(t.name, f"target_{t.name}", (OPTIMIZED, NAMES, *((MODEL,) if t.keras_model else ())), (t.name,),
              tf1_reads=(OPTIMIZED, NAMES), notes=unrolled if t.keras_model else ())
        for t in REGISTRY)
    folders = tuple(t.name for t in REGISTRY)
    return (
        Stage("convert", "convert", (), (MODEL,), keras_only=True),
        Stage("export", "export", (MODEL,), (CKPT, GRAPH, OP_NAMES, SIGNATURE), keras_only=True),
        Stage("freeze", "freeze", (CKPT, GRAPH, SIGNATURE), (FROZEN, NAMES), tf1_reads=()),
        Stage("optimize", "optimize", (FROZEN, NAMES), (OPTIMIZED, PASSES)),
        *targets,
        Stage("verify", "verify", (*folders, OPTIMIZED, FROZEN, NAMES, GRAPH, CKPT, SIGNATURE), (),
              tf1_reads=(*folders, OPTIMIZED, FROZEN, NAMES), metrics=True),
    )


STAGES = _stages()
BY_NAME = {s.name: s for s in STAGES}

_HEADER = """\
# Generated from kfreeze/layout.py (STAGES): edit that table, then 'python -m kfreeze.layout > dvc.yaml'.
# Per-model stages: Keras models (params 'models:') run all of them, TF graph + checkpoint
# models ('graphs:') run the *_tf1 copies. DVC's foreach cannot filter one mapping, hence two.
# Each model's files live in models/<name>/; resolve records their hashes in the settings of
# the stages that read them (so a 'dvc add'-ed source's .dvc and .gitignore files rerun nothing).
# An entry holds only what differs from the defaults, so no stage declares params: (DVC
# refuses a missing one). resolve, one process for every model, reads params.yaml, checks the
# model names (before any stage whose command line holds one), validates the entries and writes
# each stage's settings, defaults filled in, to build/settings/<name>/<stage>.json; each stage
# reads that file and nothing else, and depends on it, so an edit reruns exactly the stages it
# can affect, for that model only (kfreeze/settings.py explains).
# Targets (params 'targets', default [tf]; one per entry of kfreeze/targets/registry.py) make
# build/<name>/<target>/ from optimized.pb. foreach cannot filter, so these stages exist for
# every model; one whose target is not requested writes only build/<name>/<target>/signature.json
# ({requested: false}, no TensorFlow import). A target stage's settings file holds only its own
# target, so adding tflite to a model reruns exactly its tflite stage and verify.
# The per-model stages depend on build/settings/kfreeze.json, resolve's hash of the kfreeze folder,
# not on the folder: an edit of kfreeze still reruns every stage (through resolve), and `dvc status`
# hashes the folder once instead of once per stage (issue 24: 1800 times with 200 models).
stages:
  # Every model name checked first, with no name on its command line: the per-model stages put
  # names into shell commands, so a name with a ';' would run before kfreeze saw it.
  resolve:
    cmd: python stages/resolve.py
    deps:
      - params.yaml
      - models
      - kfreeze
    outs:
      - build/settings
"""

_FOOTER = """\
  summary:
    # One row per model for `dvc plots` (op counts, sizes, parity), and parity in digits
    # (-log10 of the difference) for `dvc metrics diff`, whose 5-decimal rounding shows 1e-8 as 0.0.
    cmd: python -m kfreeze.compare.summary metrics plots/models.csv plots/parity.json
    deps:
      - metrics
      - kfreeze/compare/summary.py
    outs:
      - plots/models.csv:
          cache: false
    metrics:
      - plots/parity.json:
          cache: false
"""


def settings_stages(section: str) -> list[str]:
    """The settings files resolve writes for a section, by DVC stage name (convert, freeze_tf1...)."""
    from kfreeze.params import KERAS
    return [s.name if section == KERAS else f"{s.name}_tf1" for s in STAGES if section == KERAS or not s.keras_only]


def dvc_yaml(plots: str) -> str:
    """dvc.yaml's text: the header, 'resolve', per section the stages of ``STAGES``, 'summary',
    then ``plots`` (the plot definitions, kept as written)."""
    from kfreeze.params import KERAS, TF1

    lines = [_HEADER.rstrip("\n")]
    for section in (KERAS, TF1):
        sfx = "" if section == KERAS else "_tf1"
        for stage in STAGES:
            if stage.keras_only and section == TF1:
                continue
            reads = stage.reads if section == KERAS or stage.tf1_reads is None else stage.tf1_reads
            notes = dict(stage.notes) if section == KERAS else {}
            lines += [f"  {stage.name}{sfx}:", f"    foreach: ${{{section}}}", "    do:",
                      f"      cmd: python stages/{stage.script}.py -- ${{key}}", "      deps:",
                      f"        - build/{SETTINGS}/${{key}}/{stage.name}{sfx}.json"]
            lines += [f"        - build/${{key}}/{r}" + (f"  # {notes[r]}" if r in notes else "") for r in reads]
            lines.append(f"        - build/{SETTINGS}/{CODE}")
            if stage.writes:
                lines += ["      outs:"] + [f"        - build/${{key}}/{w}" for w in stage.writes]
            if stage.metrics:
                lines += ["      metrics:", "        - metrics/${key}.json:", "            cache: false"]
    return "\n".join(lines) + "\n" + _FOOTER + plots


def plots_section(text: str) -> str:
    """The 'plots:' part of a dvc.yaml text (from its line on)."""
    at = text.find("\nplots:")
    return text[at + 1:] if at >= 0 else ""


if __name__ == "__main__":
    from pathlib import Path
    print(dvc_yaml(plots_section(Path("dvc.yaml").read_text())), end="")
