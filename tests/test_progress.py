"""Progress lines: on stderr as a stage works, with times; never in stdout, artifacts or metrics."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kfreeze import progress
from tests.conftest import tiny_project

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def loud(monkeypatch):
    monkeypatch.delenv("KFREEZE_QUIET", raising=False)
    progress.install()  # what the kfreeze command and the stage scripts do
    progress.begin("export", "tiny")


def test_the_library_alone_prints_no_progress_but_logs_it(monkeypatch, capsys):
    """A program that imports kfreeze gets log records (logger kfreeze.progress), not stderr lines."""
    import logging
    monkeypatch.delenv("KFREEZE_QUIET", raising=False)
    handlers = [h for h in progress.log.handlers if isinstance(h, progress.LineHandler)]
    for h in handlers:
        progress.log.removeHandler(h)
    records = []
    catcher = logging.Handler()
    catcher.emit = records.append
    progress.log.addHandler(catcher)
    level = progress.log.level
    progress.log.setLevel(logging.INFO)  # what a program asks for that wants them
    try:
        with progress.step("tracing"):
            pass
    finally:
        progress.log.setLevel(level)
        progress.log.removeHandler(catcher)
        for h in handlers:
            progress.log.addHandler(h)
    assert capsys.readouterr().err == ""
    assert [(r.event, r.getMessage()) for r in records] == [("start", "tracing"), ("end", "tracing")]


def test_a_step_names_the_stage_and_model_and_ends_with_its_time(loud, capsys):
    with progress.step("tracing the model"):
        pass
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("[export tiny] tracing the model ... ") and err.endswith(" s\n")
    assert float(err.split("... ")[1].split()[0]) >= 0


def test_counts_have_no_carriage_return_when_stderr_is_not_a_terminal(loud, capsys):
    with progress.step("running", total=16) as step:
        for _ in range(16):
            step.advance()
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1 and "16/16, " in err


def test_a_warning_inside_a_step_gets_its_own_line(loud, capsys):
    from kfreeze.errors import warn
    with progress.step("freezing"):
        warn("tiny: warning: something")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "[export tiny] freezing ..."
    assert lines[1] == "tiny: warning: something"
    assert lines[2].startswith("[export tiny] freezing: ") and lines[2].endswith(" s")


def test_a_failing_step_says_so(loud, capsys):
    with pytest.raises(ValueError), progress.step("loading"):
        raise ValueError("x")
    assert "loading ... failed after " in capsys.readouterr().err


def test_quiet_prints_nothing(monkeypatch, capsys):
    monkeypatch.setenv("KFREEZE_QUIET", "1")
    with progress.step("tracing", total=2) as step:
        step.advance(2)
    assert capsys.readouterr().err == ""


STAGES = ("resolve", "convert", "export", "freeze", "optimize", "verify")


def _run_stages(project, quiet: bool, stages=STAGES):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("KFREEZE_QUIET", None)
    if quiet:
        env["KFREEZE_QUIET"] = "1"
    errs = {}
    for stage in stages:
        result = subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py"), "--", "tiny"], cwd=project,
                                env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.splitlines()) == 1 and not result.stdout.startswith("[")  # the summary line only
        errs[stage] = result.stderr
    files = sorted(p for p in project.rglob("*") if p.is_file() and "models" not in p.parts)
    return errs, {p.relative_to(project): p.read_bytes() for p in files}


@pytest.mark.slow
def test_stages_show_progress_and_write_the_same_artifacts_when_quiet(tmp_path):
    """Every stage loud; then optimize and verify again, quiet, from the same inputs: the files they
    write (optimized.pb, the metrics) are byte for byte the loud run's."""
    tiny_project(tmp_path, samples=4)
    loud_err, loud_files = _run_stages(tmp_path, quiet=False)
    again = ("optimize", "verify")
    for path in loud_files:
        if path.parts[0] == "metrics" or path.name == "optimized.pb":
            (tmp_path / path).unlink()
    quiet_err, quiet_files = _run_stages(tmp_path, quiet=True, stages=again)
    for stage, err in loud_err.items():
        assert f"[{stage} tiny] " in err and " s\n" in err, (stage, err)
    for stage, err in quiet_err.items():
        assert f"[{stage} tiny]" not in err, (stage, err)
    assert "[export tiny] importing TensorFlow and Keras ... " in loud_err["export"]
    assert "[verify tiny] running optimized.pb in a TF session ... 4/4, " in loud_err["verify"]
    assert "OpenCV" in loud_err["verify"] and "\r" not in loud_err["verify"]
    assert loud_files.keys() == quiet_files.keys() and len(loud_files) > 10
    assert loud_files == quiet_files  # no time, count or progress text in any artifact or metric
