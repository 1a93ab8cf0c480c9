#!/usr/bin/env bash
# Everything `make demo`, `make test` and `make bench` need on a fresh Debian 12 machine (as
# root), idempotently: the build's dependencies (scripts/build-deps.sh) and the tests'
# (scripts/test-deps.sh). A production build needs only the first: `make install`, `make package`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-deps.sh
scripts/test-deps.sh
