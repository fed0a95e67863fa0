# The two commands of the README: `make run` (set up, index, start the app) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml changes. The app needs the base install (plus the `llm`
# extra when KLAUSA_LLM asks for a chat model); the tests need everything (`dev` includes `llm`).
SUM := $(shell cksum pyproject.toml | cut -d' ' -f1)
APP_EXTRAS := $(if $(filter-out none,$(KLAUSA_LLM)),llm,base)
APP_STAMP := $(VENV)/.installed-$(APP_EXTRAS)-$(SUM)
DEV_STAMP := $(VENV)/.installed-dev-$(SUM)
# llama.cpp (the `llm` extra) builds from source. A native build enables ggml's AMX kernels on
# CPUs that report AMX, and those crash (segfault in decode) on these virtual machines; a
# portable AVX2 build does not. The same flags give the same wheel in pip's cache.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
PORT ?= 8501

.PHONY: run test setup ingest services bench bench-scale

run: $(APP_STAMP)
	$(BIN)/klausa ingest --if-stale
	$(BIN)/klausa serve --port $(PORT)

test: $(DEV_STAMP) services
	$(BIN)/ruff check .
	$(BIN)/pytest

setup: $(DEV_STAMP)

$(VENV)/.installed-%-$(SUM): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml to the CPU build; one install resolves everything.
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 \
	  $(BIN)/pip install --quiet -e ".$(if $(filter base,$*),,[$*])"
	# The dev install holds every extra, so it satisfies the app's stamps too.
	$(if $(filter dev,$*),touch $(VENV)/.installed-base-$(SUM) $(VENV)/.installed-llm-$(SUM))
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

ingest: $(APP_STAMP)
	$(BIN)/klausa ingest

bench: $(APP_STAMP)
	$(BIN)/python bench/run.py

# Synthetic corpus of ~1,000 policies (~90k chunks) built from the seeds and the PolicyQA
# policies in ../shared/external; SIZES=5,100 for a shorter run.
SIZES ?= 5,100,1000
bench-scale: $(APP_STAMP)
	$(BIN)/python bench/scale.py --sizes $(SIZES)
