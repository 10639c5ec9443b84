# make demo  — train → export → classify → bench on the built-in demo data (no internet, no GPU)
#              GPU=1 (here and in every target that trains): a workstation's NVIDIA GPU, with the
#              gpu extra (TensorFlow with CUDA's libraries from pip, a few GB) instead of train
# make test  — the test suite (< 10 minutes; make test-long: the tests that train their own models)
# make bench — benchmark a run: make bench RUN=runs/NAME (default: the demo run, built if missing)
# make bench-device BUNDLE=path/to/export — the device bench (Raspberry Pi): installs only the
#              [edge] extra, never TensorFlow; on a Pi, `make bench` is this target
# make calibration-study RUN=runs/NAME — int8 accuracy and range settling against the number of
#              calibration images, on the validation split (benchmarks/calibration_study.py)
# make tune-bench [OUT=/tmp/tune-e2e] — edge-tune end to end on 10 classes × 300 small pictures:
#              probe, bench on this machine, search (target: under 30 min on 2 cores; tune/e2e.py)
# make feature-cache-bench — phase 1 on cached backbone features against end to end: seconds per
#              epoch and val accuracy, MobileNetV2 1.0/160 (benchmarks/feature_cache.py; ~15 min)
# make deploy-check — edge-deploy, edge-collect and the Ansible playbooks against two sshd on localhost
# make init-from-bench [OUT=/tmp/init-from-bench] — edge-train --init-from against a fresh start
#              on the same new data: epochs and seconds to the same val accuracy
#              (benchmarks/init_from_study.py; a few minutes on 2 cores)
# make demo-backbone — remake train/demo_backbone.weights.h5, the backbone the demo starts from:
#              MobileNetV3-Small trained on ten other drawn shapes (train/demo_backbone.py; ~10 min)
# make gpu-check — the demo's network trained from scratch in mixed precision on an NVIDIA GPU,
#              exported and checked, then the pretrained path,
#              images/s per phase (benchmarks/gpu_check.py; installs the gpu extra); one line
#              and exit 0 where there is no NVIDIA GPU
# make mediapipe-check — load the exported models in MediaPipe Tasks (a venv of its own,
#                 cached in ~/.cache/edge-toolchain; see tests/test_mediapipe.py)
# make wheel — dist/edge_toolchain-VERSION-py3-none-any.whl: what a Raspberry Pi installs (README,
#              "On the Raspberry Pi": the wheel with the edge extra, no clone)
# make imx500-check — export the tiny run for the Raspberry Pi AI Camera (Sony's converter in a
#                 venv of its own with TensorFlow 2.15, cached in ~/.cache/edge-toolchain; Java 17)
# make pi-check — rehearse the Raspberry Pi install on an emulated Raspberry Pi OS, arm64 (root,
#                 Linux; PI_CHECK_SUITE=trixie for Trixie; cached in /var/cache/edge-toolchain;
#                 see scripts/pi_check.py)
# Each target creates .venv and installs what it needs the first time.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := runs/demo
RUN    ?=
BUNDLE ?=
# A Raspberry Pi names itself in the device tree: there, benchmarks never install TensorFlow
ON_PI  := $(shell grep -qas 'Raspberry Pi' /proc/device-tree/model && echo yes)
# GPU=1: the gpu extra (train + CUDA's libraries) wherever the train extra is installed
TRAIN_EXTRA := $(VENV)/.installed-$(if $(filter 1 yes,$(GPU)),gpu,train)
# the demo's settings live in train.demo_data.DEMO_TRAIN_SETTINGS
DEMO_FLAGS := --preset demo

.PHONY: demo demo-backbone gpu-check wheel test test-long deploy-check bench bench-device calibration-study tune-bench feature-cache-bench init-from-bench pi-check mediapipe-check imx500-check lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# one stamp per extra: re-installs when pyproject.toml changes. A venv made when the edge
# extra had OpenCV's GUI build (opencv-python) loses both builds first: both own cv2/
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	@if $(BIN)/python -m pip show --quiet opencv-python >/dev/null 2>&1; then \
	    $(BIN)/python -m pip uninstall --quiet --yes opencv-python opencv-python-headless; fi
	$(BIN)/python -m pip install --quiet -e ".[$*]"
	touch $@

demo: $(TRAIN_EXTRA)
	@if [ -f $(DEMO)/checkpoints/state.json ]; then \
	    echo "== resuming the interrupted demo run"; \
	    $(BIN)/edge-train --out $(DEMO) $(DEMO_FLAGS) --resume; \
	elif [ ! -f $(DEMO)/model.keras ]; then \
	    echo "== 1/4 train"; $(BIN)/edge-train --out $(DEMO) $(DEMO_FLAGS); \
	else echo "== 1/4 train: $(DEMO)/model.keras exists (rm -r $(DEMO) to retrain)"; fi
	@echo "== 2/4 export (the demo's: plain int8, no search for layers to keep in float)"
	$(BIN)/edge-export $(DEMO) --int8-target-drop off
	@echo "== 3/4 classify a few test images with the int8 model"
	$(BIN)/edge-classify --model $(DEMO)/export/model_int8.tflite \
	    $$($(BIN)/python -m train.splits $(DEMO)/splits.json --split test --per-class 1)
	@echo "== 4/4 bench (the demo's: no process per model for peak memory, 50 timed runs a model)"
	$(BIN)/edge-bench $(DEMO) --no-memory --runs 50 --warmup 5

# built aside and moved in whole, so dist/ never holds half a wheel
wheel: | $(BIN)/python
	@rm -rf build/wheel && mkdir -p build/wheel dist
	$(BIN)/python -m pip wheel --quiet --no-deps --wheel-dir build/wheel .
	@for w in build/wheel/*.whl; do mv -f "$$w" dist/ && echo "dist/$$(basename $$w)"; done
	@rm -rf build/wheel

# make test stays under 10 minutes on 2 cores; the tests that train or export models of their
# own (learnability, determinism, resume, strategies, quantization debugging) are test-long,
# and the MediaPipe check installs a second environment: CI runs all three
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not mediapipe and not imx500 and not long and not sshd"

test-long: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m long --durations=10

# edge-deploy, edge-collect and the Ansible roles against two sshd on localhost (tests/test_fleet.py,
# tests/test_collect_fleet.py; skips,
# saying why, without openssh-server and rsync: .ci/run installs them when root)
deploy-check: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m sshd -v

mediapipe-check: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m mediapipe -v

imx500-check: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m imx500 -v tests/test_imx500.py

# with BUNDLE= (any machine) or on a Pi, `make bench` is the TensorFlow-free device bench
ifneq ($(BUNDLE)$(ON_PI),)
bench: bench-device
else
bench: $(TRAIN_EXTRA)
	@if [ -n "$(RUN)" ]; then $(BIN)/edge-bench $(RUN); else $(BIN)/edge-bench --demo $(DEMO); fi
endif

# the GPUs are looked for before the install: a machine without one skips, installing nothing
gpu-check: | $(BIN)/python
	@if $(BIN)/python -m train.nvidia >/dev/null; then \
	    $(MAKE) --no-print-directory $(VENV)/.installed-gpu; fi
	$(BIN)/python -m benchmarks.gpu_check

# remakes train/demo_backbone.weights.h5, the backbone make demo starts from (about ten minutes)
demo-backbone: $(TRAIN_EXTRA)
	$(BIN)/python -m train.demo_backbone

# the usage check comes before the install: a typo must not cost a venv
bench-device:
	@if [ -z "$(BUNDLE)" ]; then \
	    echo "usage: make bench-device BUNDLE=path/to/export  (a bundle copied from the workstation: the folder with manifest.json)" >&2; \
	    exit 2; fi
	@$(MAKE) --no-print-directory $(VENV)/.installed-edge
	$(BIN)/edge-bench $(BUNDLE)

calibration-study:
	@if [ -z "$(RUN)" ]; then echo "usage: make calibration-study RUN=runs/NAME" >&2; exit 2; fi
	@$(MAKE) --no-print-directory $(TRAIN_EXTRA)
	$(BIN)/python -m benchmarks.calibration_study $(RUN)

tune-bench: $(TRAIN_EXTRA)
	$(BIN)/python -m tune.e2e $(or $(OUT),/tmp/tune-e2e)

feature-cache-bench: $(TRAIN_EXTRA)
	$(BIN)/python -m benchmarks.feature_cache

init-from-bench: $(TRAIN_EXTRA)
	$(BIN)/python -m benchmarks.init_from_study $(or $(OUT),/tmp/init-from-bench)

# the dev extra trains the tiny bundle the emulated tests use. Under sudo the venv is built as
# the user who ran sudo, and root writes no bytecode into the checkout: nothing in it is left
# owned by root
pi-check:
	@if [ "$$(id -u)" = 0 ] && [ -n "$$SUDO_USER" ] && [ "$$SUDO_USER" != root ]; then \
	    sudo -H -u "$$SUDO_USER" $(MAKE) --no-print-directory $(VENV)/.installed-dev; \
	else $(MAKE) --no-print-directory $(VENV)/.installed-dev; fi
	PYTHONDONTWRITEBYTECODE=1 $(BIN)/python scripts/pi_check.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

clean:  # your runs/ stay: they are your trained models
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
