# asgi-gateway build, run and test entry points. `make run` and `make test` work on a fresh clone:
# they build the Go binary and create .venv with the pinned Python dependencies.

PYTHON ?= python3
GO     ?= go
VENV   := .venv
VPY    := $(VENV)/bin/python
BIN    := bin/asgi-gateway
HOST   ?= 127.0.0.1
PORT   ?= 8000
GO_SOURCES := $(shell find cmd gateway protocol -name '*.go' 2>/dev/null) go.mod go.sum

.PHONY: all build venv run test test-go test-python fuzz bench memcheck h2spec clean

all: build

build: $(BIN)

$(BIN): $(GO_SOURCES)
	$(GO) build -o $(BIN) ./cmd/asgi-gateway

# The virtualenv: pinned test and example dependencies, plus the worker package (editable).
venv: $(VENV)/.installed

# (setup.py builds the worker's optional C module, python_worker/_speedups.c: a change to it rebuilds.)
$(VENV)/.installed: integration_tests/requirements.txt examples/requirements.txt python_worker/pyproject.toml \
		python_worker/setup.py python_worker/python_worker/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r integration_tests/requirements.txt
	$(VPY) -m pip install -q -e ./python_worker
	touch $@

# Serve the Starlette example on http://127.0.0.1:8000.
run: build venv
	VIRTUAL_ENV=$(CURDIR)/$(VENV) $(BIN) run starlette_app:app --app-dir examples --host $(HOST) --port $(PORT)

test: test-go test-python

test-go:
	$(GO) vet ./...
	$(GO) test ./...

test-python: build venv
	$(VPY) -m mypy --config-file python_worker/pyproject.toml python_worker/python_worker
	$(VPY) -m pytest -q python_worker/tests integration_tests

# A short fuzzing pass over the decoders (CI runs it too).
fuzz:
	$(GO) test -run XXX -fuzz FuzzDecode -fuzztime 300000x ./protocol
	$(GO) test -run XXX -fuzz FuzzReader -fuzztime 150000x ./protocol
	$(GO) test -run XXX -fuzz FuzzParseHead -fuzztime 600000x ./gateway/http1
	$(GO) test -run XXX -fuzz FuzzChunked -fuzztime 250000x ./gateway/http1
	$(GO) test -run XXX -fuzz FuzzDecoder -fuzztime 150000x ./gateway/websocket
	$(GO) test -run XXX -fuzz FuzzScope -fuzztime 30000x ./gateway
	$(GO) test -run XXX -fuzz FuzzH2Guard -fuzztime 40000x ./gateway
	$(GO) test -run XXX -fuzz FuzzBodyRingTake -fuzztime 1500x ./gateway

clean:
	rm -rf bin $(VENV)

# Memory check: 1 GiB upload to a slow app and 1 GiB download by a slow client; prints peak RSS.
memcheck: build venv
	$(VPY) bench/memcheck.py

# Side-by-side benchmark (bench/README.md). BENCH_ARGS=--quick for a ~3-minute smoke run;
# also -w WORKLOADS, -s SERVERS, --rounds N, --duration S, --warmup S, --list.
BENCH_ARGS ?=

bench: venv
	bash bench/run.sh $(BENCH_ARGS)

# HTTP/2 conformance: h2spec against the TLS listener (installs h2spec into bin/ if missing).
# H2SPEC_ARGS selects sections, e.g. make h2spec H2SPEC_ARGS=http2/6.5
h2spec: build venv
	bash bench/h2spec.sh $(H2SPEC_ARGS)
