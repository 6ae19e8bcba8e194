# The two commands of the README: `make book` and `make test`. Each sets up .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the venv is (re)installed when it is missing or pyproject.toml's content changed
DEPS_HASH := $(shell sha256sum pyproject.toml | cut -c1-16)
STAMP := $(VENV)/.installed-$(DEPS_HASH)
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: book test lab venv vendor chromium clean

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
	$(BIN)/python -m amodalkit book run --profile quick
	$(BIN)/python -m amodalkit book build --profile quick

test: venv vendor chromium
	$(BIN)/python -m pytest -q

lab: venv
	$(BIN)/jupyter lab --notebook-dir=notebooks $(ALLOW_ROOT)

clean:
	rm -rf build
