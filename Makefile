# Two entry points do all set-up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Which torch `make install` puts in .venv, before vt (vt itself accepts any torch >= 2.4):
#   make install                  TORCH=cpu, the default: torch==$(TORCH_VERSION)+cpu, PyTorch's CPU build (~200 MB);
#                                 it fails, rather than falling back to CUDA, where no CPU wheel can be found:
#                                 where pip's own indexes lack it, add TORCH_INDEX=<PyTorch's CPU wheel index URL>
#   make install TORCH=cuda       torch==$(TORCH_VERSION) from pip's index (the CUDA build on Linux, ~3 GB with
#                                 the nvidia-* wheels); use this on a GPU machine
#   make install TORCH=cuda TORCH_VERSION=2.7.1 TORCH_INDEX=<PyTorch's cu126 wheel index URL>   a CUDA-specific build
# TORCH_INDEX is added to pip's own indexes for the torch step only (empty: pip's configured indexes alone).
# Run `make clean` first to change the torch of an existing .venv.
TORCH ?= cpu
TORCH_VERSION ?= 2.13.0
TORCH_SPEC_cpu := torch==$(TORCH_VERSION)+cpu
TORCH_SPEC_cuda := torch==$(TORCH_VERSION)
TORCH_SPEC ?= $(TORCH_SPEC_$(TORCH))
TORCH_INDEX ?=

$(BIN)/vt: pyproject.toml
	@test -n "$(TORCH_SPEC)" || { echo "TORCH=$(TORCH): use TORCH=cpu or TORCH=cuda (or set TORCH_SPEC)"; exit 2; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, the build chosen by TORCH (cpu|cuda): an unpinned torch pulls several GB of CUDA wheels
	$(BIN)/python -m pip install -q $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) '$(TORCH_SPEC)'
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

# FSDP on 2 CPU processes (issue 32): trains, checkpoints and resumes like 2-process DDP (~45 s; not in `make test`)
test-sharded: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m sharded

bench: install
	$(BIN)/python bench/build_data.py
	$(BIN)/python bench/judge.py
	$(BIN)/python bench/score.py
	$(BIN)/python bench/train_step.py

bench-science: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/science.py

# The reproducibility matrix (issue 28): 4 warm-start builds (one on another float path) x 2 GRPO seeds with the
# demo's settings and 3 builds with the science settings; prints split_runs=P/N (~1.5 h on 2 cores).
bench-matrix: install
	HF_HUB_OFFLINE=1 $(BIN)/python bench/science.py --matrix --out bench-matrix

# The README's picture, redrawn by vt's own code: `vt report`'s per-source resize curves of the demo's GRPO run
# (demo-out/report/plots/resize_by_source.png), copied to docs/img/ (runs `make demo` first; ~5 min once cached).
picture: demo
	mkdir -p docs/img
	cp demo-out/report/plots/resize_by_source.png docs/img/resize-by-source.png

clean:
	rm -rf $(VENV) demo-out science-out bench-science bench-matrix .pytest_cache

.PHONY: install demo picture science test test-fast test-science test-sharded bench bench-science bench-matrix clean
