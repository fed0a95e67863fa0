# The two commands of the README: `make run` (set up, index, start the app) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
PORT ?= 8501

.PHONY: run test setup ingest services bench

run: $(STAMP)
	$(BIN)/klausa ingest --if-stale
	$(BIN)/streamlit run app.py --server.port $(PORT)

test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/pytest

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml to the CPU build; one install resolves everything.
	$(BIN)/pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# What the tests start themselves: Debian's Chromium for the end-to-end test (Playwright
# drives it; no browser download) and a PostgreSQL server for the answer-log test.
services:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing (needs root)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

ingest: $(STAMP)
	$(BIN)/klausa ingest

bench: $(STAMP)
	$(BIN)/python bench/run.py
