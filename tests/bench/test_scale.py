"""bench/scale.py's pure helpers: the params it writes, the DVC output it reads, the report. No DVC build."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import scale  # noqa: E402


def test_model_names_have_one_length():
    assert scale.model_names(3) == ["m000", "m001", "m002"]
    names = scale.model_names(1200)
    assert names[-1] == "m1199" and len({len(n) for n in names}) == 1


def test_params_one_entry_per_model_and_the_edit_in_one_entry_only():
    names = scale.model_names(200)
    params = yaml.safe_load(scale.params_text(names))
    assert list(params["models"]) == names and params["graphs"] == {}
    assert params["models"]["m007"] == {"source": "models/m007/model.keras"}
    edited = yaml.safe_load(scale.params_text(names, "input_shape", "m100"))
    assert edited["models"]["m100"]["input_shape"] == [1, 8, 8, 1]
    assert {n for n in names if edited["models"][n] != params["models"][n]} == {"m100"}
    tol = yaml.safe_load(scale.params_text(names, "atol", "m001"))
    assert tol["models"]["m001"]["verify"] == {"atol": 2.0e-4}


def test_params_entries_are_valid_for_kfreeze(tmp_path):
    from kfreeze.params import model_spec
    path = tmp_path / "params.yaml"
    path.write_text(scale.params_text(scale.model_names(4), "input_shape", "m002"))
    assert model_spec("m002", path).input_shape == [1, 8, 8, 1]
    assert model_spec("m003", path).source == "models/m003/model.keras"


REPRO = """\
Running stage 'resolve':
> python stages/resolve.py
Stage 'convert@m000' didn't change, skipping
Running stage 'export@m002':
> python stages/export.py -- m002
Stage 'freeze@m000' didn't change, skipping
Running stage 'verify@m002':
> python stages/verify.py -- m002
Updating lock file 'dvc.lock'
"""

STATUS = """\
resolve:
	changed deps:
		modified:           params.yaml
verify@m002:
	changed deps:
		modified:           build/settings/m002/verify.json
"""


def test_repro_and_status_output_parsed():
    assert scale.stages_ran(REPRO) == ["resolve", "export@m002", "verify@m002"]
    assert scale.stages_skipped(REPRO) == 2
    assert scale.status_changed(STATUS) == ["resolve", "verify@m002"]
    assert scale.status_changed("Data and pipelines are up to date.\n") == []


def test_differing_files_tells_a_name_from_other_bytes():
    a = {"x": b"same", "n": b"model m000 here", "o": b"1.0", "only_a": b""}
    b = {"x": b"same", "n": b"model m001 here", "o": b"1.5"}
    assert scale.differing_files(a, b, "m000", "m001") == {"n": "name", "o": "other", "only_a": "missing"}


def test_markdown_from_results():
    run = {"stages": 1802, "status_s": 12.0, "noop_repro_s": 9.0, "dry_repro_s": 9.5, "edit_status_s": 12.1,
           "edit_repro_s": 60.0, "build_one_s": 120.0, "commit_s": 30.0, "edit": "input_shape", "edited": "m100",
           "edit_status_listed": ["resolve"], "edit_ran": ["resolve", "export@m100"], "edit_only_that_model": True}
    results = {"date": "2026-12-03", "machine": "2 cores", "dvc": "3.0", "reps": 3,
               "identical_check": {"files": 10, "differ": {"build/NAME/signature.json": "name"}},
               "runs": {"200": run, "4": {**run, "stages": 37}}}
    text = scale.result_markdown(results)
    assert "| `dvc status` | 12.0 | 12.0 |" in text and "| stages in dvc.yaml | 37 | 1802 |" in text
    assert text.index("4 models") < text.index("200 models")  # columns by N, not as strings
    assert "status_s ≤ 10.0 s: 12.0 s, missed (200 models)" in text
    assert "noop_repro_s ≤ 10.0 s: 9.0 s, met (200 models)" in text
    assert "`build/NAME/signature.json` (name)" in text


def test_move_code_dep_replaces_the_folder_dep_of_per_model_stages_only():
    folder = {"path": "kfreeze", "hash": "md5", "md5": "x.dir", "size": 9, "nfiles": 3}
    settings = {"path": "build/settings/m000/convert.json", "hash": "md5", "md5": "s", "size": 1}
    lock = {"schema": "2.0", "stages": {
        "resolve": {"deps": [folder, {"path": "params.yaml"}]},
        "convert@m000": {"deps": [settings, folder]},
        "summary": {"deps": [{"path": "metrics"}]}}}
    assert scale.move_code_dep(lock, "abc", 42) == 1
    assert lock["stages"]["convert@m000"]["deps"] == [  # by path, as DVC writes them
        {"path": "build/settings/kfreeze.json", "hash": "md5", "md5": "abc", "size": 42}, settings]
    assert lock["stages"]["resolve"]["deps"][0] == folder  # resolve still hashes the folder
