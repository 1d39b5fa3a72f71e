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

# The miniature experiment: warm start -> score -> curate -> GRPO x 3 penalty modes -> eval -> report.
science: install
	HF_HUB_OFFLINE=1 $(BIN)/vt demo --science --out science-out

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

test-fast: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not science"

# The science check (CI runs it after make test): the warm start (built once, ~5 min, then cached), one GRPO run
# with the paper penalty and one without, eval: fine images resized, coarse ones not (~12 min on 2 cores).
test-science: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m science

bench: install
	$(BIN)/python bench/build_data.py
	$(BIN)/python bench/judge.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/train_step.py

bench-science: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/science.py

clean:
	rm -rf $(VENV) demo-out science-out .pytest_cache

.PHONY: install demo science test test-fast test-science bench bench-science clean
