# Two commands: `make demo` (install everything, then the embedded demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lint bench clean

$(STAMP): pyproject.toml overrides.txt scripts/system-deps.sh
	./scripts/system-deps.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 'uv==0.13.9'
	# uv, not pip: f5-tts's cached-path caps filelock < 4 and f5guard needs >= 4.2.1 (overrides.txt says why).
	# torch, torchaudio and torchcodec pinned together (see docs/operators.md); f5-tts keeps those pins.
	# compat: a plain path entry; the default editable finder costs ~20 ms at every interpreter start
	# --compile-bytecode: pip does it, uv does not by default, and with PYTHONDONTWRITEBYTECODE set (CI) every
	# fresh interpreter would compile torch again (measured: import torch+f5_tts 23 s instead of 11 s).
	$(BIN)/uv pip install --python $(BIN)/python --no-progress --compile-bytecode --overrides overrides.txt \
		-C editable_mode=compat -e '.[train,recipe,dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/f5guard demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check f5guard tests bench
	$(BIN)/ruff format --check f5guard tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) f5guard-demo .pytest_cache .mypy_cache .ruff_cache
