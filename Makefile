# The two commands of the README: `make repro` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-quick test-matrix test-e2e test-docs test-cpp test-peers bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test,viz]"
	touch $@

repro: install
	dvc repro

# Two workers; a test file stays on one worker, in order (a few tests reuse what an earlier one built).
XDIST := -n 2 --dist loadfile

test: install
	python -m pytest -q $(XDIST) -m "not matrix and not e2e and not peers and not docs and not cpp"

# The edit-test loop: make test without the tests marked slow (over about 5 s: real dvc runs, stage processes).
test-quick: install
	python -m pytest -q $(XDIST) -m "not slow and not matrix and not e2e and not peers and not docs and not cpp"

# Breadth (.ci/run runs it): every row of the conformance matrix (the whole file, so that the full run
# also checks docs/conformance.md), every recurrent class's siblings, real models in OpenCV.
test-matrix: install
	python -m pytest -q $(XDIST) -m "not e2e and not peers and not docs and not cpp" tests/conformance
	python -m pytest -q $(XDIST) -m "matrix and not e2e and not peers and not docs and not cpp" --ignore=tests/conformance

# Whole projects and processes (.ci/run runs it): scratch projects built over several commits, pushed, cloned,
# diffed; the pipeline's real reruns and forced rebuild; stages killed mid-write.
test-e2e: install
	python -m pytest -q $(XDIST) -m "e2e and not docs"

# The peers' own tests (TF's freeze_graph/optimize_for_inference/graph transforms, tf2onnx, Keras export)
# rebuilt and run through `kfreeze run` (tests/peers/README.md; .ci/run runs it).
test-peers: install
	python -m pytest -q -m peers tests/peers -rxX

# The README's pasted transcripts, regenerated for real and compared (several minutes; .ci/run runs it).
test-docs: install
	python -m pytest -q -m docs

# The examples' optimized.pb in the C++ OpenCV a service links (pkg-config opencv4, e.g. Debian's
# libopencv-dev; skipped without it): tests/cpp/load_graph.cpp built with g++ and run (.ci/run runs it).
test-cpp: install
	python -m pytest -q -m cpp tests/cpp

# The benchmark (not a test): `make bench`, or `make bench ARGS=--quick`; see bench/README.md.
# Its peer runtimes (ONNX Runtime, LiteRT) are kfreeze's own dependencies.
bench: install
	python bench/run.py $(ARGS)

clean:
	rm -rf build
