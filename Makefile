# tokcodec: `make demo` runs the main job, `make test` runs the test suite.
# Both install what they need into .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: install demo test test-all clean

install: $(STAMP)

# torch is installed on its own first: the pinned version is a CPU build that
# lies on these machines, while an unpinned one drags in GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23"
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,bench,stream]"
	touch $(STAMP)

demo: install
	$(BIN)/tokcodec demo

test: install
	$(BIN)/python -m pytest -q

# Everything, slow and corpus tests included (corpus tests skip when it is absent).
test-all: install
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(VENV) build *.egg-info
