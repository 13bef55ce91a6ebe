# Two set-up commands, both from a fresh clone (Python 3.11 + pip, no GPU, no hub downloads):
#   make quickstart   venv + install (CPU torch pinned) + the embedded digits default
#   make test         venv + dev install (llm, sweep, hf, lora, onnx, trl extras) + the test suite (what CI runs via .ci/run)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Pinned: any other torch spec pulls a multi-GB CUDA build on these machines.
TORCH  := torch==2.13.0

.PHONY: quickstart test install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,llm,sweep,hf,lora,onnx,trl]' $(TORCH)  # the pin again: no extra may move torch
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

quickstart: $(VENV)/.installed
	$(BIN)/distill train recipes/quickstart-digits.yaml --overwrite

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache
