# The two commands of the README: `make repro` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-quick test-e2e test-docs test-peers bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@

repro: install
	dvc repro

test: install
	python -m pytest -q -m "not docs and not e2e and not peers"

# The edit-test loop: everything but the tests marked slow (real dvc runs, stage processes).
test-quick: install
	python -m pytest -q -m "not slow and not docs and not peers"

# Sharing end to end: scratch projects built over several commits, pushed, cloned, diffed (.ci/run runs it).
test-e2e: install
	python -m pytest -q -m "e2e and not docs"

# The peers' own tests (TF's freeze_graph/optimize_for_inference/graph transforms, tf2onnx, Keras export)
# rebuilt and run through `kfreeze run` (tests/peers/README.md; .ci/run runs it).
test-peers: install
	python -m pytest -q -m peers tests/peers -rxX

# The README's pasted transcripts, regenerated for real and compared (several minutes; .ci/run runs it).
test-docs: install
	python -m pytest -q -m docs

# The benchmark (not a test): `make bench`, or `make bench ARGS=--quick`; see bench/README.md.
# Its peer runtimes (ONNX Runtime, LiteRT) are the optional extra `bench`, installed here only.
$(VENV)/.installed-bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,bench]"
	touch $@

bench: $(VENV)/.installed-bench
	python bench/run.py $(ARGS)

clean:
	rm -rf build
