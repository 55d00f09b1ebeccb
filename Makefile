# sandan developer entry points. Every target is idempotent and quick when already done.
# The local stack (Kafka, Redis, Prometheus) is driven by scripts/stack.sh; see deploy/README.md.

# The interpreter the venv is built on: scripts/pick-python.sh says which and why (README,
# "Which Python"); `make PY=/path/to/python3.11 setup` picks another.
PY ?= $(shell scripts/pick-python.sh)
VENV = .venv
VENV_PY = $(VENV)/bin/python
STAMP = $(VENV)/.stamp
STACK = scripts/stack.sh
# Generated gRPC code (not committed); the _grpc module is written last, so it stands for both.
PROTO_GEN = services/gateway/proto/gateway_pb2_grpc.py
PYTEST_ARGS ?= -q
# `make down SERVICES=kafka` stops only Kafka, `make up SERVICES=prometheus` starts only
# Prometheus; empty means all of kafka, redis and prometheus.
SERVICES ?=
# `make up KAFKA_NODES=3` starts three Kafka nodes instead of one (README, "Three brokers");
# give it to down/status/reset too, or export SANDAN_KAFKA_NODES.
KAFKA_NODES ?=
ifneq ($(KAFKA_NODES),)
export SANDAN_KAFKA_NODES := $(KAFKA_NODES)
endif

.DEFAULT_GOAL := help
.PHONY: help venv proto setup up down status reset test demo clean test-faults test-faults-long soak ledger-sim fuzz bench-signatures bench-clients bench-gateway

help:
	@echo "make venv     .venv with sandan installed editable (plus test tools)"
	@echo "make proto    (re)build the gateway's gRPC code from schemas/proto (venv does it when stale)"
	@echo "make setup    venv + Kafka jars + redis-server + prometheus (with promtool) + faketime"
	@echo "make up       start Kafka, Redis and Prometheus on 127.0.0.1 and wait until they answer"
	@echo "              KAFKA_NODES=3: three Kafka nodes (then: eval \"\$$(scripts/stack.sh env)\")"
	@echo "make down     stop them (data is kept); SERVICES='kafka redis prometheus' picks some"
	@echo "make status   one line per service"
	@echo "make reset    down, then delete the Kafka, Redis and Prometheus data"
	@echo "make test     up, then pytest (PYTEST_ARGS='$(PYTEST_ARGS)')"
	@echo "make test-faults  crash, outage, fuzz and security tests on a private stack; ends with the fault table"
	@echo "make test-faults-long  the long tier at load: three Kafka nodes, Redis restart/wipe, rebalance, each service killed 3 times (not CI)"
	@echo "make soak     1,000,000 declarations through the pipeline, a random fault every 30 s, audited (hours; not CI)"
	@echo "              [SOAK_DECLARATIONS=1000000 SOAK_RATE=<measured> SOAK_FAULT_EVERY=30 SOAK_SEED=N SOAK_RESUME=1]"
	@echo "make ledger-sim SEED=N [SEEDS=1 STEPS=30]  replay seeds of the simulated money ledger (tests/sim)"
	@echo "make fuzz [FUZZ_SECONDS=600 FUZZ_TARGETS='ceb_xml submit worker']  coverage-guided fuzzing (atheris), growing tests/fuzz/corpus"
	@echo "make demo     up, then sandan demo"
	@echo "make bench-codec  Avro and CEB XML encode/decode figures (JSON)"
	@echo "make bench-signatures  SM2-SM3 and RSA signature verifications per second on one core (JSON)"
	@echo "make bench    the pipeline at full speed next to raw Kafka (JSON; BENCH_ARGS='--rate 1000' for latency)"
	@echo "make bench-clients  the Kafka client's CPU per record: aiokafka against confluent-kafka (JSON)"
	@echo "make bench-gateway  the gateway's Submit rate with signatures checked and without (JSON; BENCH_ARGS='--seconds 60')"
	@echo "make bench-memory  a million pending declarations in order_match's RocksDB table (JSON; minutes)"
	@echo "make clean    remove .venv and build output (keeps .local data, see reset, and the Kafka jars in .cache)"

venv: $(STAMP) $(PROTO_GEN)
	@base=$$($(VENV_PY) -c 'import os, sys; print(os.path.realpath(sys._base_executable))'); \
	want=$$(realpath "$$(command -v $(PY))" 2>/dev/null); \
	[ -z "$$want" ] || [ "$$base" = "$$want" ] || echo "note: $(VENV) runs on $$base, not on $$want: 'make clean setup' builds it there (README, \"Which Python\")"

# Reinstall only when the dependency list changed; the editable install picks up code
# changes by itself.
$(STAMP): pyproject.toml
	@test -x $(VENV_PY) || { echo "creating $(VENV) with $(PY)"; $(PY) -m venv $(VENV); }
	@$(VENV_PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "error: $(VENV) is not Python 3.11 (PY=$(PY)); run 'make clean' and retry with PY=python3.11" >&2; exit 1; }
	@echo "installing sandan and test tools into $(VENV)"
	@$(VENV_PY) -m pip install -q -e '.[test]'
	@touch $@

proto: $(STAMP)
	@$(VENV_PY) -m services.gateway.protobuild --force

# A new .proto or a new venv (other protobuf runtime) rebuilds the generated code.
$(PROTO_GEN): schemas/proto/gateway.proto $(STAMP)
	@$(VENV_PY) -m services.gateway.protobuild --force

setup: venv
	@$(STACK) setup

up: setup
	@$(STACK) up $(SERVICES)

down:
	@$(STACK) down $(SERVICES)

# status exits 3 when a service is stopped; that is an answer, not a make failure.
status:
	@$(STACK) status || true

reset:
	@$(STACK) reset

test: up
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

# Its own Kafka and Redis (tests/faults/stack.env: other ports, .local/faults), which it stops,
# restarts and wipes; never the shared stack of `make up`. The long tier (tests marked `long`:
# the three-node cluster's faults, Redis restart and wipe and the rebalance at load, each service
# killed three times in a run of its own) is test-faults-long, not CI.
test-faults: setup
	$(VENV_PY) -m pytest tests/faults -m "not long" $(PYTEST_ARGS)

test-faults-long: setup
	$(VENV_PY) -m pytest tests/faults -m long $(PYTEST_ARGS)

# The soak (tests/faults/soak.py; README, "Soak"): SOAK_DECLARATIONS through the whole pipeline on the
# fault suite's private stack, a random fault every SOAK_FAULT_EVERY seconds of load, audited chunk by
# chunk; progress every 30 s, the report in .local/faults/soak-report.{json,md}. SOAK_RATE empty:
# half the rate measured by a burst, as the fault suite does. Hours at a million: never CI.
SOAK_DECLARATIONS ?= 1000000
SOAK_RATE ?=
SOAK_FAULT_EVERY ?= 30
SOAK_SEED ?=
SOAK_RESUME ?=
soak: setup
	SOAK_DECLARATIONS="$(SOAK_DECLARATIONS)" SOAK_RATE="$(SOAK_RATE)" SOAK_FAULT_EVERY="$(SOAK_FAULT_EVERY)" \
		SOAK_SEED="$(SOAK_SEED)" SOAK_RESUME="$(SOAK_RESUME)" $(VENV_PY) -m tests.faults.soak

# One seed (or SEEDS from it) of the simulated money ledger on the local Redis: the command a
# failure of tests/sim/test_ledger_sim.py prints.
SEEDS ?= 1
STEPS ?= 30
ledger-sim: up
	@test -n "$(SEED)" || { echo "usage: make ledger-sim SEED=N [SEEDS=1 STEPS=30]" >&2; exit 2; }
	$(VENV_PY) -m tests.sim.ledger --seed $(SEED) --seeds $(SEEDS) --steps $(STEPS)

# The long fuzzing run (atheris): FUZZ_SECONDS per target, new inputs added to tests/fuzz/corpus/<target>,
# a crash's input left in .local/fuzz/crashes (replay: python -m tests.fuzz.run --target T FILE).
FUZZ_SECONDS ?= 600
FUZZ_TARGETS ?= ceb_xml submit worker
fuzz: venv
	@for t in $(FUZZ_TARGETS); do echo "fuzzing $$t for $(FUZZ_SECONDS) s"; \
		$(VENV_PY) -m tests.fuzz.run --target $$t --seconds $(FUZZ_SECONDS) || exit 1; done

# The demo checks the receipts it reads against the official XSDs when it finds them next to
# the repository (or wherever CEB_XSD_DIR already points); sandan never needs them to run.
DEMO_XSD_DIR := $(or $(CEB_XSD_DIR),$(wildcard $(CURDIR)/../shared/ceb/xsd))

# The demo writes the Confluent wire format through the registry `make up` started.
DEMO_REGISTRY_URL ?= http://127.0.0.1:$${SANDAN_SCHEMA_REGISTRY_PORT:-18081}/apis/ccompat/v7
demo: up
	SANDAN_SCHEMA_REGISTRY_URL="$${SANDAN_SCHEMA_REGISTRY_URL:-$(DEMO_REGISTRY_URL)}" CEB_XSD_DIR="$(DEMO_XSD_DIR)" $(VENV)/bin/sandan demo

bench-codec: venv
	$(VENV_PY) -m bench.codec

bench-signatures: venv
	$(VENV_PY) -m bench.signatures

# Never part of `make test`: minutes of full load. Progress on stderr, one JSON line on stdout.
BENCH_ARGS ?=
bench: up
	@$(VENV_PY) -m bench.pipeline $(BENCH_ARGS)

bench-memory: up
	@$(VENV_PY) -m bench.memory $(BENCH_ARGS)

# A gateway process on the local Kafka, signed CEB621s on concurrent Submit streams, then unsigned ones.
bench-gateway: up
	@$(VENV_PY) -m bench.gateway_submit $(BENCH_ARGS)

# The Kafka client's CPU per record, aiokafka against confluent-kafka (installed here only).
bench-clients: up
	@$(VENV_PY) -c 'import confluent_kafka' 2>/dev/null || $(VENV_PY) -m pip install -q -e '.[bench]'
	@$(VENV_PY) -m bench.kafka_clients $(BENCH_ARGS)

# .cache is left alone: a running broker loads classes from those jars lazily.
clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist *.egg-info
	rm -f services/gateway/proto/*_pb2*.py
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
