# aad_auth: `make demo` shows it working, `make test` runs every test tier.
# Everything runs on a fresh Debian machine as root; `scripts/setup.sh` installs what is missing.

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
CARGO ?= cargo
export PG_CONFIG

.PHONY: all setup build install install-dev demo bench test test-core test-sql test-e2e fmt lint clean

all: build

setup:
	@scripts/setup.sh

build: setup
	$(CARGO) build

# A release build installed into the server that $(PG_CONFIG) names (for real servers).
install: setup
	$(CARGO) pgrx install --release --pg-config $(PG_CONFIG)

# A debug build installed the same way (what the demo and the end-to-end tests load).
install-dev: setup
	$(CARGO) pgrx install --pg-config $(PG_CONFIG)

demo: install-dev
	$(CARGO) build -p aad_auth_testkit --bin aad-auth-mint
	scripts/demo.sh

# Tier 1: the pure core. Tier 2: #[pg_test]s in a pgrx-managed cluster.
# Tier 3: real clusters, a real pg_hba.conf, psql and a wire-protocol client.
test: setup test-core test-sql test-e2e

test-core:
	$(CARGO) test -p aad_auth_core -p aad_auth_testkit

test-sql: setup
	scripts/pg-test.sh tests::pg_

test-e2e: install-dev
	$(CARGO) test -p aad_auth --test e2e --test config --test keys --test principals --test directory --test load --test secrets --test attacks

# Connection rates (trust, SCRAM, password, token) and the core's time per token.
bench: setup
	$(CARGO) pgrx install --release --pg-config $(PG_CONFIG)
	$(CARGO) build --release -p aad_auth_testkit --bin aad-auth-mint
	scripts/bench.sh
	$(CARGO) bench -p aad_auth_core --bench validate

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy -p aad_auth_core --all-targets -- -D warnings

clean:
	$(CARGO) clean
