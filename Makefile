# tokcodec: `make demo` runs the main job, `make test` runs the test suite.
# Both install what they need into .venv first.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
TORCH   := torch==2.13.0

.PHONY: install browser demo test test-all clean

install: $(STAMP)

# torch is installed on its own first: the pinned version is a CPU build that
# lies on these machines, while an unpinned one drags in GB of CUDA packages.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23"
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test,bench,stream]"
	touch $(STAMP)

# The browser test needs Debian's chromium and chromedriver. Install them where
# we can (root with apt-get); elsewhere tests/test_browser.py skips and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver for the browser test"; \
	  (apt-get update -q >/dev/null 2>&1; DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1) \
	    || echo "note: could not install chromium; the browser test will skip"; \
	else echo "note: chromium is not installed and cannot be (not root); the browser test will skip"; fi

demo: install
	$(BIN)/tokcodec demo

test: install browser
	$(BIN)/python -m pytest -q

# Everything, slow and corpus tests included (corpus tests skip when it is absent).
test-all: install browser
	$(BIN)/python -m pytest -q -m ""

clean:
	rm -rf $(VENV) build *.egg-info
