"""The resolve stage: each stage's settings, defaults filled in, in its own small file; and a stage's
reading of its file, the only settings it reads.

DVC cannot track a params key that is not in the params file, so with defaults no stage
declares ``params:``. The ``resolve`` stage (one TensorFlow-free process for all models) validates
the entries and writes what each stage reads to BUILD/settings/<name>/<stage>.json; each stage depends on
its own file, and a file whose bytes did not change does not rerun its stage. A stage reads
that file and nothing else (``read``): what dvc.lock records is what the artifact was built with.
A key the file does not cover cannot be read (``StageSpec``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from kfreeze import layout
from kfreeze.errors import KfreezeError
from kfreeze.params import (CALIBRATION_STAGES, KERAS, KEYS, PARAMS_FILE, STAGE_PARAMS, TF1, VERIFY, ModelSpec,
                            Origin, VerifySpec, check_int8, model_spec, stage_params, verify_spec)


def settings_file(build: str | Path, name: str, stage: str) -> Path:
    """Where the resolve stage writes what ``stage`` reads: BUILD/settings/<name>/<stage>.json.

    One folder for every model's settings, the resolve stage's one output: one process resolves
    all models, and a stage depends on its own file inside it (DVC allows a dependency inside
    another stage's output), so an edit of one entry reruns that model's stages only."""
    return Path(build) / layout.SETTINGS / name / f"{stage}.json"


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, (list, tuple)) else (
        {k: _jsonable(v) for k, v in value.items()} if isinstance(value, dict) else value)


def stage_settings(name: str, path: str | Path = PARAMS_FILE) -> dict[str, dict]:
    """{dvc stage: what it reads}, resolved with defaults: what the resolve stage writes per stage."""
    spec = model_spec(name, path)
    vspec = verify_spec(path, name)  # the project's verify keys with this model's own over them
    check_int8(spec, vspec)
    verify_keys = stage_params(VERIFY)
    calibrates = spec.precision == "int8"  # the tflite stages read verify.data only then: no reruns otherwise
    return {stage: {"model": {k: _jsonable(_for_stage(spec, k, stage)) for k in keys},
                    VERIFY: {k: _jsonable(getattr(vspec, k)) for k in verify_keys.get(stage, ())
                             if calibrates or stage not in CALIBRATION_STAGES}}
            for stage, keys in STAGE_PARAMS[spec.section].items()}


def _for_stage(spec: ModelSpec, key: str, stage: str):
    """The key's value as ``stage`` sees it (``Key.per_stage``: a target's stage sees only its own target)."""
    key_ = KEYS[spec.section][key]
    value = getattr(spec, key)
    value = value if key_.per_stage is None else key_.per_stage(value, stage)
    return value if key_.per_spec is None else key_.per_spec(value, stage, spec)


def settings_bytes(settings: dict) -> bytes:
    """Canonical JSON: same settings, same bytes (DVC compares the files by hash)."""
    import json
    return (json.dumps(settings, indent=2, sort_keys=True) + "\n").encode()


class _Hiding:
    """Reading a key the stage's settings file does not cover is a bug (DVC would not rerun the
    stage when that key changes), so it raises."""

    def __getattribute__(self, attr):
        if attr in object.__getattribute__(self, "_hidden"):
            raise RuntimeError(f"stage {object.__getattribute__(self, '_stage')} read '{attr}', which its "
                               "settings file does not cover (add the stage to that key's Key.stages)")
        return object.__getattribute__(self, attr)


class StageSpec(_Hiding, ModelSpec):
    pass


class StageVerifySpec(_Hiding, VerifySpec):
    pass


def read(build: str | Path, name: str, stage: str) -> tuple[ModelSpec, VerifySpec]:
    """What ``stage`` (convert, export, freeze, optimize, verify, or a target) reads, from its settings
    file and nothing else: BUILD/<name>/settings/<stage>.json ('<stage>_tf1.json' for a 'graphs:' entry).

    Returns the model's entry and the verify keys as that stage sees them; reading any other key raises."""
    folder = settings_file(build, name, stage).parent
    found = [f for f in (folder / f"{stage}.json", folder / f"{stage}_tf1.json") if f.is_file()]
    if not found:
        raise KfreezeError(folder / f"{stage}.json", "no settings for this stage",
                           f"run 'kfreeze resolve {name}' first ('dvc repro' runs it)")
    path = found[0]
    try:
        data = json.loads(path.read_text())
        model, verify = data["model"], data[VERIFY]
    except (ValueError, KeyError, TypeError):
        raise KfreezeError(path, "is not a settings file the resolve stage wrote",
                           f"run 'kfreeze resolve {name}' again") from None
    section = TF1 if path.stem.endswith("_tf1") else KERAS
    keys = KEYS[section]
    fields = {}
    for key, spec in keys.items():
        default = spec.convert(spec.default)
        fields[key] = model.get(key, default)
    spec = StageSpec(name=name, section=section, origin=Origin.project(section, name), **fields)
    object.__setattr__(spec, "_hidden", frozenset(set(keys) - set(model)))
    object.__setattr__(spec, "_stage", path.stem)
    vfields = {}
    for key, vkey in KEYS[VERIFY].items():
        default = vkey.convert(vkey.default)
        value = verify.get(key, default)
        vfields[key] = tuple(value) if isinstance(default, tuple) else value
    vspec = StageVerifySpec(**vfields)
    object.__setattr__(vspec, "_hidden", frozenset(set(KEYS[VERIFY]) - set(verify)))
    object.__setattr__(vspec, "_stage", path.stem)
    return spec, vspec


# The stages that read the model's own files (models/<name>/): their settings carry the files' hashes.
FILE_STAGES = ("convert", "verify", "freeze_tf1", "verify_tf1")
# DVC's and git's bookkeeping beside a 'dvc add'-ed source: not the model's content.
BOOKKEEPING = (".gitignore", ".dvcignore")


def special_file(path: Path) -> None:
    """Refuse a FIFO, device or socket where a file is read: opening one blocks or never ends."""
    import stat
    mode = path.lstat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a socket")
        raise KfreezeError(path, f"is {kind}, not a regular file; reading it would block or never end",
                           "use the real file (kfreeze never reads a FIFO, device or socket)")


def model_files(folder: str | Path) -> dict[str, str]:
    """{path inside the folder: sha256} of the model's files, sorted; '*.dvc' and .gitignore left out.

    Why not a DVC dependency on models/<name>/: 'dvc add models/<name>/model.keras' writes
    model.keras.dvc and .gitignore there, which would change that folder's hash and rerun
    convert and verify for nothing. The resolve stage depends on the folder instead (it is cheap),
    and a stage reruns only when these hashes change. A symlink is recorded by its target's
    name, never followed (the stages refuse links that leave the folder).
    """
    import hashlib
    folder = Path(folder)
    files = {}
    for file in sorted(folder.rglob("*")):
        rel = file.relative_to(folder).as_posix()
        if file.name.endswith(".dvc") or file.name in BOOKKEEPING or (file.is_dir() and not file.is_symlink()):
            continue
        if file.is_symlink():
            files[rel] = "symlink:" + os.readlink(file)
            continue
        special_file(file)
        digest = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        files[rel] = digest.hexdigest()
    return files


def write_all(path: str | Path = PARAMS_FILE, build: str | Path = "build",
              models_root: str | Path = "models") -> dict[str, list[str]]:
    """The resolve stage: every model name checked (before DVC builds a command line from one), then
    each entry's settings written (``write_settings``); a model no longer in the params file loses
    its folder. Returns {name: the stages whose file changed}."""
    import shutil

    from kfreeze.params import check_all_names
    names = [n.split(".", 1)[1] for n in check_all_names(path)]
    written = {name: write_settings(name, path, build, models_root) for name in names}
    root = Path(build) / layout.SETTINGS
    write_code_digest(root / layout.CODE)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder.name not in written and folder.is_dir() and not folder.is_symlink():
            shutil.rmtree(folder)
    return written


def code_digest(package: str | Path | None = None) -> dict:
    """One hash of the kfreeze package's files (``kfreeze/`` of the project, else the imported one),
    skipping what .dvcignore skips (``__pycache__/``, ``*.pyc``, ``.*.tmp``).

    Every per-model stage depends on the file resolve writes it to (``layout.CODE``) instead of on
    the ``kfreeze`` folder: the same reruns (an edit of kfreeze reruns resolve, which depends on
    the folder, and then every stage), but `dvc status` hashes the folder once, not once per stage
    (1800 folder hashes with 200 models; bench/README.md, section 'scale')."""
    if package is None:
        package = Path("kfreeze") if Path("kfreeze").is_dir() else Path(__file__).resolve().parent
    root = Path(package)
    digest = hashlib.sha256()
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fname in sorted(filenames):
            if fname.endswith(".pyc") or (fname.startswith(".") and fname.endswith(".tmp")):
                continue
            path = Path(dirpath) / fname
            rel = path.relative_to(root).as_posix()
            digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).hexdigest().encode() + b"\n")
            count += 1
    return {"files": count, "sha256": digest.hexdigest()}


def write_code_digest(target: Path, package: str | Path | None = None) -> bool:
    """``code_digest`` to ``target``, left alone (mtime too) when unchanged; True when written."""
    from kfreeze import atomic
    data = settings_bytes(code_digest(package))
    if target.is_file() and target.read_bytes() == data:
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(target, data)
    return True


def write_settings(name: str, path: str | Path = PARAMS_FILE, build: str | Path = "build",
                   models_root: str | Path = "models") -> list[str]:
    """One entry: validate it and write BUILD/settings/<name>/<stage>.json for each stage,
    with the hashes of the model's files for the stages that read them (``FILE_STAGES``).

    A file whose bytes would not change is left alone (its mtime too)."""
    from kfreeze import atomic
    written = []
    files = None
    for stage, settings in stage_settings(name, path).items():
        if stage in FILE_STAGES:
            files = model_files(Path(models_root) / name) if files is None else files
            settings = {**settings, "files": files}
        elif settings["model"].get("precision") == "int8" and settings[VERIFY].get("data"):
            # int8 calibrates on verify.data: new inputs rerun that target's stage (its file's hash only)
            files = model_files(Path(models_root) / name) if files is None else files
            data_file = Path(settings[VERIFY]["data"]).as_posix()
            settings = {**settings, "files": {data_file: files.get(data_file, "missing")}}
        target = settings_file(build, name, stage)
        # the other section's file of this stage (the entry moved between models: and graphs:) would
        # be read instead of this one: gone
        other = settings_file(build, name, stage.removesuffix("_tf1") if stage.endswith("_tf1") else f"{stage}_tf1")
        other.unlink(missing_ok=True)
        data = settings_bytes(settings)
        if not (target.is_file() and target.read_bytes() == data):
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(target, data)
            written.append(stage)
    return written
