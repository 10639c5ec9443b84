# make demo  — train → export → classify → bench on the built-in demo data (no internet, no GPU)
# make test  — the test suite
# make bench — benchmark a run: make bench RUN=runs/NAME (default: the demo run, built if missing)
# make pi-check — rehearse the Raspberry Pi install on an emulated arm64 Debian (root, Linux;
#                 cached in /var/cache/edge-toolchain; see scripts/pi_check.py)
# Each target creates .venv and installs what it needs the first time.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := runs/demo
RUN    ?=
# the demo's settings live in train.demo_data.DEMO_TRAIN_SETTINGS
DEMO_FLAGS := --preset demo

.PHONY: demo test bench pi-check lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# one stamp per extra: re-installs when pyproject.toml changes
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-train
	@if [ -f $(DEMO)/checkpoints/state.json ]; then \
	    echo "== resuming the interrupted demo run"; \
	    $(BIN)/edge-train --out $(DEMO) $(DEMO_FLAGS) --resume; \
	elif [ ! -f $(DEMO)/model.keras ]; then \
	    echo "== 1/4 train"; $(BIN)/edge-train --out $(DEMO) $(DEMO_FLAGS); \
	else echo "== 1/4 train: $(DEMO)/model.keras exists (rm -r $(DEMO) to retrain)"; fi
	@echo "== 2/4 export"
	$(BIN)/edge-export $(DEMO)
	@echo "== 3/4 classify a few test images with the int8 model"
	$(BIN)/edge-classify --model $(DEMO)/export/model_int8.tflite \
	    $$($(BIN)/python -m train.splits $(DEMO)/splits.json --split test --per-class 1)
	@echo "== 4/4 bench"
	$(BIN)/edge-bench $(DEMO)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-train
	@if [ -n "$(RUN)" ]; then $(BIN)/edge-bench $(RUN); else $(BIN)/edge-bench --demo $(DEMO); fi

# the dev extra trains the tiny bundle the emulated tests use
pi-check: $(VENV)/.installed-dev
	$(BIN)/python scripts/pi_check.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs .pytest_cache
