# The two commands of the README's quick start, and the venv they share.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo

INTEROP_VENV ?= .venv-interop

.PHONY: demo test interop-venv container-test

# compat: a plain path entry, not an import hook that every start of ckptwatch pays for.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]' --config-settings editable_mode=compat
	$(PY) -m compileall -q ckptwatch  # as a wheel install would: starts skip compiling
	touch $@

# Train a small model that saves every 20 steps; ckptwatch runs listeners.d/ on
# each save, and 30-stop-at-step stops training at step 100.
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	STOP_AT_STEP=100 $(VENV)/bin/ckptwatch run $(DEMO_DIR) -l listeners.d -- $(PY) examples/train.py $(DEMO_DIR)

# The frameworks for tests/interop (TF, Keras, torch, Transformers, Lightning, Orbax, DeepSpeed) in their
# own venv; rebuilt only when tests/interop/requirements.txt changed.
interop-venv:
	INTEROP_VENV=$(INTEROP_VENV) tests/interop/setup.sh

# The whole suite, interop included: an interop test that skips fails the run
# unless tests/interop/allowed-skips.txt lists it with a reason. Its tests spend
# most of their time waiting for real processes (the load stays under 1 on two
# cores), so TEST_WORKERS of them run at once: 17 min alone, 5 min with 4.
TEST_WORKERS ?= 4
test: $(VENV)/.installed interop-venv
	CKPTWATCH_REQUIRE_INTEROP=1 CKPTWATCH_INTEROP_PYTHON=$(abspath $(INTEROP_VENV))/bin/python \
		$(PY) -m pytest -n $(TEST_WORKERS)

# The image built with podman and run as a sidecar (tests/container/): a few
# minutes; installs podman with apt-get when it is missing and can be.
container-test: $(VENV)/.installed
	PY=$(PY) tests/container/run.sh
