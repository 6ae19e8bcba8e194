# The README's commands: `make book` (the reader's book from what is committed: no training), `make regenerate` (re-run
# the stale chapters, FORCE=1 all of them, JOBS=N training processes first, record their wall times, build; REPLICA=1: the same run on the default CPU
# kernels into results/<profile>-kernel-default), `make test`, `make lab`. Each sets up
# .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the venv is (re)installed when it is missing or pyproject.toml's content changed
DEPS_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

PROFILE ?= quick
# processes that train the chapters' models before their notebooks run (SaVos, CRW, Mask-VOS): two models at once
# with one thread each beat one after the other with two threads on this 2-core machine (benchmarks/parallel_warmup.py)
JOBS ?= 2

.PHONY: book regenerate gpu status test lab venv vendor chromium clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[book,test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

vendor: venv
	$(BIN)/python -m amodalkit book vendor

# Debian's Chromium for the browser test, installed when absent (the machine is root; else use sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get)"; \
	  $(if $(ALLOW_ROOT),,sudo) apt-get update -qq && $(if $(ALLOW_ROOT),,sudo) apt-get install -y -qq chromium >/dev/null; }

book: venv vendor
	$(BIN)/python -m amodalkit book build --profile $(PROFILE)

regenerate: venv vendor
	$(BIN)/python -m amodalkit book run --profile $(PROFILE) $(if $(REPLICA),--replica,--record-times) $(if $(FORCE),--force,) $(if $(JOBS),--jobs $(JOBS),)
	$(BIN)/python -m amodalkit book build --profile $(PROFILE)

# the gpu edition (a CUDA machine; without one, its code path at smoke size into results/gpu-cpu-smoke), then the book
gpu: venv vendor
	$(BIN)/python -m amodalkit book run --profile gpu --record-times $(if $(FORCE),--force,)
	$(BIN)/python -m amodalkit book build --profile quick

status: venv
	$(BIN)/python -m amodalkit book status --profile $(PROFILE)

test: venv vendor chromium
	$(BIN)/python -m pytest -q

lab: venv
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

clean:
	rm -rf build
