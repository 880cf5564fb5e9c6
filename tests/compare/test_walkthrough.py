"""docs/sharing_walkthrough.md (pasted into the README) is what docs/sharing_walkthrough.py prints today.

Commit hashes and DVC md5s are masked: they follow from every byte of kfreeze/ copied into the
scratch project, so any code change moves them without changing what the walkthrough shows.
Everything else (op counts, sizes, parity, files pushed, messages) must match: when it does not,
rerun `python docs/sharing_walkthrough.py` and paste the new blocks into the README.
"""

from __future__ import annotations

import re

import pytest

from tests.compare.repo_helpers import ROOT


def masked(text: str) -> str:
    text = re.sub(r"\b[0-9a-f]{32}\b", "<md5>", text)
    return re.sub(r"\b[0-9a-f]{7,40}\b", "<sha>", text)


def test_masking_keeps_numbers():
    assert masked("e181f8c alpha 2342 -> 2342 md5 0123456789abcdef0123456789abcdef") == \
        "<sha> alpha 2342 -> 2342 md5 <md5>"


@pytest.mark.slow
@pytest.mark.docs  # minutes: a whole scratch project; `make test-docs`, run by .ci/run
def test_walkthrough_transcript_is_current(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("walkthrough", ROOT / "docs" / "sharing_walkthrough.py")
    walkthrough = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(walkthrough)
    text = walkthrough.main(tmp_path / "kf").replace(str(tmp_path / "kf"), "/tmp/kf")
    assert masked(text) == masked(walkthrough.TRANSCRIPT.read_text())
