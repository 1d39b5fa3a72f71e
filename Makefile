# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0

$(BIN)/vt: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: an unpinned torch pulls several GB of CUDA wheels
	$(BIN)/python -m pip install -q torch==$(TORCH_VERSION)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(BIN)/vt

install: $(BIN)/vt

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/vt demo --out demo-out

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python bench/build_data.py
	$(BIN)/python bench/judge.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/train_step.py

clean:
	rm -rf $(VENV) demo-out .pytest_cache

.PHONY: install demo test test-fast bench clean
