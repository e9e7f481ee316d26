# customlabels: the two commands a newcomer needs are `make run` and `make test`.
# Everything installs itself into .venv (and weights/) on first use.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
INSTALLED   := $(VENV)/.installed
WEIGHTS_DIR := $(CURDIR)/weights

export CUSTOMLABELS_DATA    ?= $(CURDIR)/data
export CUSTOMLABELS_WEIGHTS ?= $(WEIGHTS_DIR)
export TORCH_HOME           ?= $(WEIGHTS_DIR)/torch

.PHONY: install run test bench-ingest bench-bus bench-train bench-detect clean

## install: virtual environment, pinned packages (torch, torchvision, ...), verified weights
install: $(INSTALLED) $(WEIGHTS_DIR)/.verified

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $@

$(WEIGHTS_DIR)/.verified: $(INSTALLED) shared/customlabels/ml/weights.py
	$(PY) -m customlabels.ml.weights install --dir $(WEIGHTS_DIR)
	touch $@

## run: the whole service, embedded, on 127.0.0.1:8080 (CUSTOMLABELS_PORT / CUSTOMLABELS_DATA override)
run: install
	$(VENV)/bin/customlabels serve

## test: every test (the servers they need are started by the test fixtures)
test: install
	$(PY) -m pytest

## bench-ingest: 20,000-line manifest through UpdateDatasetEntries, then paging ListDatasetEntries
bench-ingest: install
	$(PY) tests/benchmarks/bench_ingest.py

## bench-train: train on flowers-small, bccd, microcontroller, raccoon through the service, beside a linear probe (about 50 min)
bench-train: install
	$(PY) tests/benchmarks/bench_train.py

## bench-bus: events/s and publish-to-handle latency, Kafka (Tansu) beside the embedded bus
bench-bus: install
	$(PY) tests/benchmarks/bench_bus.py

## bench-detect: DetectCustomLabels over HTTP against the physical path (decode + onnxruntime), one trained model
bench-detect: install
	$(PY) tests/benchmarks/bench_detect.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
