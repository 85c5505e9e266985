# The two commands of the README's quick start, and the venv they share.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= runs/demo

.PHONY: demo test

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

# Train a small model that saves every 20 steps; ckptwatch runs listeners.d/ on
# each save, and 30-stop-at-step stops training at step 100.
demo: $(VENV)/.installed
	rm -rf $(DEMO_DIR)
	STOP_AT_STEP=100 $(VENV)/bin/ckptwatch run $(DEMO_DIR) -l listeners.d -- $(PY) examples/train.py $(DEMO_DIR)

test: $(VENV)/.installed
	$(PY) -m pytest
