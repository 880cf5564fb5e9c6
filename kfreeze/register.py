"""``kfreeze add``: register a model: its files in models/<name>/, its entry in params.yaml.

params.yaml is edited as text, not re-dumped, so the user's comments and layout stay: the
entry is inserted at the end of its section, then the whole file is parsed again and checked
before it replaces the old one (atomically).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import yaml

from kfreeze import atomic, params
from kfreeze.errors import KfreezeError
from kfreeze.params import KERAS, KEYS, NAME_RE, TF1

LARGE_BYTES = 10 * 2**20  # above this, offer 'dvc add' rather than committing the file to git


def _yaml_value(value) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def entry_text(name: str, entry: dict, indent: str = "  ") -> str:
    """``  name:\\n    key: value\\n`` with flow-style values ([1, 224, 224, 3])."""
    lines = [f"{indent}{name}:"] + [f"{indent * 2}{k}: {_yaml_value(v)}" for k, v in entry.items()]
    return "\n".join(lines) + "\n"


def insert_entry(text: str, section: str, name: str, entry: dict) -> str:
    """``text`` with ``name: entry`` appended to the top-level ``section:`` mapping, comments kept.

    By hand, not ruamel.yaml's round trip (tried): ruamel attaches a comment line above the next
    section ('# TF1 models' before 'graphs:') to the last entry, so the new entry lands below it,
    and it drops the comment of a 'graphs: {}  # none yet' it turns into a block."""
    lines = text.splitlines(keepends=True)
    head = re.compile(rf"^{section}:\s*(\{{\s*\}}|null|~)?\s*(#.*)?$")
    start = next((i for i, line in enumerate(lines) if head.match(line.rstrip("\n"))), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        return text + f"{section}:\n" + entry_text(name, entry)
    if head.match(lines[start].rstrip("\n")).group(1):  # 'models: {}' -> 'models:' + the entry
        comment = head.match(lines[start].rstrip("\n")).group(2)
        lines[start] = f"{section}:" + (f"  {comment}" if comment else "") + "\n"
    end, indent = start + 1, None
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not lines[i][0].isspace():
            break  # the next top-level key
        indent = indent or lines[i][: len(lines[i]) - len(lines[i].lstrip())]
        end = i + 1
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    lines.insert(end, entry_text(name, entry, indent or "  "))
    return "".join(lines)


def _copy(src: Path, folder: Path) -> Path:
    """``src`` into ``folder`` (a real copy, symlinks followed); a file already there stays.

    Checked first (kfreeze.oneshot's check of a given file): a FIFO, device or socket, and a source
    over the size limit, are refused before a byte is copied; ``folder`` was checked by
    ``check_destination``."""
    from kfreeze.oneshot import _given_file

    if not src.exists():
        raise KfreezeError(src, "file not found", "check the path")
    dst = folder / src.name
    if dst.exists() and not dst.is_symlink() and dst.resolve() == src.resolve():
        return dst
    if dst.exists() or dst.is_symlink():
        raise KfreezeError(dst, "already exists", "remove it, or pass that file as the source")
    _given_file(src, "source")
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False)
    else:
        shutil.copyfile(src, dst)
    return dst


def check_destination(folder: Path, names) -> None:
    """Before anything is written: ``models/`` and ``models/<name>/`` are real folders (not symlinks,
    which would take the copies outside the project), and no file to be copied lands on a symlink."""
    for part in (folder.parent, folder):
        if part.is_symlink():
            raise KfreezeError(part, f"is a symlink (to {os.readlink(part)}); kfreeze add would write the model "
                               "outside the project",
                               f"remove the link and let kfreeze add create a real folder {part}/")
        if part.exists() and not part.is_dir():
            raise KfreezeError(part, "is a file, not a folder", f"move it away so kfreeze add can create {part}/")
    for name in names:
        dst = folder / name
        if dst.is_symlink():
            raise KfreezeError(dst, f"is a symlink (to {os.readlink(dst)}); copying over it would write outside "
                               f"{folder}/", "remove the link")


def _destination_names(source, arch, graph, checkpoint) -> list[str]:
    """The names ``_place`` copies into models/<name>/ (a checkpoint prefix: each of its files)."""
    import glob

    names = [Path(p).name for p in (source, arch, graph) if p is not None]
    if checkpoint is not None:
        ckpt = Path(checkpoint)
        names.append(ckpt.name)
        if not ckpt.is_dir():
            names += [part.name for part in ckpt.parent.glob(glob.escape(ckpt.name) + ".*")]
    return names


def add(name: str, source: Optional[Path], settings: dict, arch: Optional[Path] = None,
        graph: Optional[Path] = None, checkpoint: Optional[Path] = None, params_file: str = params.PARAMS_FILE,
        dvc_add: Optional[bool] = None, interactive: bool = False, echo=print) -> list[str]:
    """Copy the files to models/NAME/, write the minimal entry, offer 'dvc add' for a large source.

    Returns the paths the caller might 'dvc add' and the entry written.
    """
    path = Path(params_file)
    if (path.exists() and not path.is_file()) or path.resolve() in (Path("models").resolve(),
                                                                    (Path("models") / name).resolve()):
        # else the entry's write fails renaming onto the folder add makes
        raise KfreezeError("--params", f"{path} is a folder (or the one add makes), not a params file",
                           "give the params file, e.g. --params params.yaml")
    where = f"{path}: {name}"
    if not NAME_RE.match(name):
        raise KfreezeError(where, "a model name may only use a-z, 0-9, '_' and '-' (DVC stage names)",
                           "choose another NAME")
    if (source is None) == (graph is None):
        raise KfreezeError("kfreeze add", "give either SOURCE (a Keras file) or --graph with --checkpoint",
                           "e.g. kfreeze add mynet mynet.keras")
    from kfreeze.oneshot import route
    source, graph = route(source, graph, arch, "kfreeze add")
    text = path.read_text() if path.is_file() else ""  # a new project: add writes the first entry
    data = params.load_text(text, path, require_models=False)
    for section in (KERAS, TF1):
        if name in (data.get(section) or {}):
            raise KfreezeError(f"{path}: {section}.{name}", "already exists",
                               "choose another NAME, or edit that entry")
    section = KERAS if source is not None else TF1
    unknown = sorted(set(settings) - set(KEYS[section]))
    if unknown:
        raise KfreezeError(f"--{unknown[0].replace('_', '-')}",
                           "is a 'verify:' setting for every model" if unknown[0] in KEYS[params.VERIFY]
                           else "does not apply to this kind of model", "leave it out")
    folder = Path("models") / name
    check_destination(folder, _destination_names(source, arch, graph, checkpoint))
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        entry, files, new_text = _place(name, section, folder, source, arch, graph, checkpoint, settings, path,
                                        text)
    except BaseException:
        if created:  # a refused entry leaves no half-made folder behind
            shutil.rmtree(folder, ignore_errors=True)
        raise
    atomic.write_text(path, new_text)
    echo(f"added {section}.{name} to {path}: {', '.join(f'{k}: {_yaml_value(v)}' for k, v in entry.items())}")

    large = [f for f in files if _size(Path(f)) > LARGE_BYTES]
    for f in large:
        size = _size(Path(f)) / 2**20
        if dvc_add is None and interactive:
            import typer
            dvc_add = typer.confirm(f"{f} is {size:.0f} MB; track it with 'dvc add' instead of git?", default=True)
        if dvc_add:
            run_dvc_add(f)
            echo(f"tracked {f} with DVC ({f}.dvc goes to git; 'dvc push' shares the file)")
        else:
            echo(f"note: {f} is {size:.0f} MB; to keep it out of git: dvc add {f}")
    echo("next: dvc repro")
    return files


def _size(path: Path) -> int:
    """A file's bytes, or a folder's (a SavedModel): what 'dvc add' would take out of git."""
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
    return path.stat().st_size if path.is_file() else 0


def _place(name, section, folder, source, arch, graph, checkpoint, settings, path, text):
    """Copy the files, build and check the entry, and the new params text; writes nothing else."""
    entry, files = {}, []
    if section == KERAS:
        entry["source"] = _copy(Path(source), folder).as_posix()
        files.append(entry["source"])
        if arch is not None:
            entry["arch"] = _copy(Path(arch), folder).as_posix()
    else:
        entry["graph"] = _copy(Path(graph), folder).as_posix()
        files.append(entry["graph"])
        if checkpoint is not None:  # none: a graph frozen already, or a SavedModel folder
            ckpt = Path(checkpoint)
            entry["checkpoint"] = (folder / (ckpt.name if ckpt.resolve().parent == folder.resolve()
                                             else copy_checkpoint(ckpt, folder))).as_posix()
    entry.update(settings)
    params.parse_model(name, entry, path, section)  # kfreeze's own messages, before anything is written
    new_text = insert_entry(text, section, name, entry)
    other = TF1 if section == KERAS else KERAS
    if not re.search(rf"^{other}:", new_text, re.M):  # dvc.yaml iterates both sections
        new_text += f"{other}: {{}}\n"
    check = params.load_text(new_text, path)
    if check[section].get(name) != entry:
        raise KfreezeError(path, "could not add the entry without changing the rest of the file",
                           f"add it by hand under '{section}:': {entry}")
    return entry, files, new_text


def copy_checkpoint(checkpoint: Path, folder: Path) -> str:
    """A checkpoint folder, or a prefix (model.ckpt-600 -> its .index/.data-* and 'checkpoint' files),
    copied into ``folder``; returns the name the entry gives it."""
    import glob

    if checkpoint.is_dir():
        _copy(checkpoint, folder)
        return checkpoint.name
    parts = sorted(checkpoint.parent.glob(glob.escape(checkpoint.name) + ".*"))
    if not parts:
        raise KfreezeError(checkpoint, "checkpoint not found (no .index or .data-* files with this prefix)",
                           "give the prefix, e.g. model.ckpt-600, or the checkpoint folder")
    for part in parts:
        _copy(part, folder)
    return checkpoint.name


def run_dvc_add(path: str) -> None:
    done = subprocess.run([sys.executable, "-m", "dvc", "add", "-q", path], capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit code {done.returncode}").splitlines()
        raise KfreezeError(path, f"dvc add failed: {lines[-1][:300]}", "run 'dvc add' yourself, or commit the file")
