# Two entry points do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_INPUT ?= nibabel:example4d.nii.gz
DEMO_DIR ?= demo-output

.PHONY: install test demo clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# The pinned CPU build first, so no later requirement pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	mkdir -p $(DEMO_DIR)
	$(BIN)/tinc compress $(DEMO_INPUT) -o $(DEMO_DIR)/example4d.tinc --ratio 64 --time-limit 60
	$(BIN)/tinc decompress $(DEMO_DIR)/example4d.tinc -o $(DEMO_DIR)/example4d-restored.nii.gz
	$(BIN)/tinc eval $(DEMO_INPUT) $(DEMO_DIR)/example4d-restored.nii.gz --tinc $(DEMO_DIR)/example4d.tinc --plot $(DEMO_DIR)/example4d.png
	@echo "slices: $(DEMO_DIR)/example4d.png"

clean:
	rm -rf $(DEMO_DIR) build dist src/*.egg-info
