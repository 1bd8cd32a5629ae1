# The two commands every user needs: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL_STORE := model_store

.PHONY: run test lint typecheck check examples soak bench protos image test-image clean help

help:
	@echo "make run        set up .venv, build the example models, start Ember in the foreground"
	@echo "make test       set up .venv with test dependencies and run the whole test suite"
	@echo "make lint       ruff on src/, tests/, examples/ and scripts/"
	@echo "make typecheck  mypy --strict on src/"
	@echo "make examples   (re)build the example model archives into ./$(MODEL_STORE)"
	@echo "make protos     regenerate the gRPC stubs in src/emberserve/grpc/generated from the .proto files"
	@echo "make bench      Ember vs TorchServe 0.12 in the same run (installs TorchServe and wrk; ~15 min)"
	@echo "make image      build the container image localhost/emberserve:<version> with podman (docker/)"
	@echo "make test-image run the image, serve the digits example through mapped ports, stop it with SIGTERM"
	@echo "make soak       5 minutes of mixed traffic: lost requests and memory slopes (SOAK_MINUTES=n)"

$(STAMP): pyproject.toml requirements-dev.txt constraints-dev.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints-dev.txt -e '.[torch,grpc]' -r requirements-dev.txt
	# Only read (never imported) by a test comparing our KServe schemas with the SDK's models; its
	# dependencies (protobuf<7) would clash with the gRPC stubs', hence --no-deps.
	$(BIN)/python -m pip install -q --no-deps kserve==0.21.0
	touch $(STAMP)

# The checkout is installed in editable mode, so pip never byte-compiled it; where
# PYTHONDONTWRITEBYTECODE is set (as on this machine) Python then recompiles every module at each
# start of the server and of every worker (~0.3 s). Compile once, as installing a wheel does: stale
# files are detected by Python and recompiled in memory, so this is always safe.
COMPILE := $(BIN)/python -m compileall -q src

$(MODEL_STORE)/.built: $(STAMP) $(wildcard examples/*/*.py) examples/build.sh
	PYTHON=$(BIN)/python bash examples/build.sh $(MODEL_STORE)
	touch $@

examples: $(MODEL_STORE)/.built

run: $(MODEL_STORE)/.built
	$(COMPILE)
	$(BIN)/emberserve --foreground --ts-config examples/config.properties \
		--model-store $(MODEL_STORE) --models digits=digits.mar echo=echo.mar

# promtool (Debian package "prometheus") lints the clean metric family in a test; installed when
# possible (root with apt), else that one test is skipped with a message saying so.
PROMTOOL_STAMP := $(VENV)/.promtool
$(PROMTOOL_STAMP): | $(STAMP)
	@command -v promtool >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq --no-install-recommends prometheus >/dev/null 2>&1; }; } || \
		echo "promtool is not installed (apt-get install prometheus): its test will be skipped"
	touch $@

test: $(STAMP) $(PROMTOOL_STAMP)
	$(COMPILE)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests examples scripts benchmarks deploy
	$(BIN)/ruff format --check src tests examples scripts benchmarks deploy

typecheck: $(STAMP)
	$(BIN)/mypy

protos: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/gen_protos.sh

# The load generator is wrk (Debian); TorchServe 0.12 goes into its own venv on first use.
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -qq wrk >/dev/null 2>&1 || \
		{ echo "make bench needs wrk: apt-get install wrk"; exit 1; }
	$(BIN)/python -m benchmarks.run

# Container image (docker/Dockerfile), built with podman from a Debian base made by debootstrap;
# both are installed with apt when missing. Not part of `make test`.
image: $(STAMP)
	PYTHON=$(BIN)/python bash scripts/image.sh

test-image: image $(MODEL_STORE)/.built
	$(BIN)/python scripts/test_image.py

SOAK_MINUTES ?= 5
soak: $(STAMP)
	$(BIN)/python scripts/soak.py --minutes $(SOAK_MINUTES)

check: lint typecheck test

clean:
	rm -rf $(VENV) $(MODEL_STORE) logs .pytest_cache .mypy_cache .ruff_cache
