#!/usr/bin/env bash
# make mutants: cargo-mutants over the pure core (all of core/src) with a fixed fuzz budget.
# Fails when a mutant survives that is not in core/mutants-equivalent.txt — the reviewed list of
# mutants that no test can kill because they change nothing observable, one per line with why —
# and when an entry there no longer matches a survivor (the list must not go stale).
# Not part of `make test`: about 20 minutes on 2 cores. Run it before resolving any change
# to the core (docs/development.md).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=27.1.0
if ! cargo mutants --version 2>/dev/null | grep -qx "cargo-mutants $VERSION"; then
    echo "installing cargo-mutants $VERSION (cargo install --locked)"
    cargo install --locked cargo-mutants --version "$VERSION"
fi

OUT=${AAD_MUTANTS_OUT:-target/mutants}
LIST=core/mutants-equivalent.txt
export AAD_FUZZ_ITERATIONS=${AAD_FUZZ_ITERATIONS:-200}
# cargo-mutants builds copies of the tree elsewhere: point the real-token test at the fixtures
# beside this checkout.
export AAD_REAL_TOKENS=${AAD_REAL_TOKENS:-$(cd .. && pwd)/shared/fixtures/real-entra-tokens.json}
mkdir -p "$OUT"
start=$(date +%s)
rc=0
cargo mutants --package aad_auth_core --output "$OUT" --jobs "${AAD_MUTANTS_JOBS:-2}" \
    --timeout-multiplier 3 "$@" || rc=$?
elapsed=$(( $(date +%s) - start ))
case $rc in
    0|2|3) ;;  # all caught / some missed / some timed out: judged below
    *) echo "make mutants: cargo mutants failed (exit $rc; 4 means the tests fail unmutated)" >&2; exit "$rc" ;;
esac

python3 - "$OUT/mutants.out" "$LIST" "$elapsed" <<'PY'
import collections, re, sys
out, listing, elapsed = sys.argv[1], sys.argv[2], int(sys.argv[3])

def lines(name):
    try:
        with open(f"{out}/{name}") as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except FileNotFoundError:
        return []

def key(mutant):
    # "core/src/jwks.rs:239:35: replace - with + in rsa_key" -> without line and column, so that
    # the list survives edits elsewhere in the file.
    return re.sub(r"^([^:]+):\d+:\d+: ", r"\1: ", mutant)

caught, missed = lines("caught.txt"), lines("missed.txt")
unviable, timeout = lines("unviable.txt"), lines("timeout.txt")
reviewed = collections.Counter()
with open(listing) as f:
    for line in f:
        line = line.strip()
        if line and not line.startswith("#"):
            mutant, _, why = line.partition("  # ")
            if not why.strip():
                sys.exit(f"make mutants: {listing}: no reason given for: {mutant}")
            reviewed[mutant.strip()] += 1
survivors = collections.Counter(key(m) for m in missed)
new = survivors - reviewed
stale = reviewed - survivors
print(f"make mutants: {len(caught)} caught, {len(missed)} missed "
      f"({sum((survivors & reviewed).values())} reviewed as equivalent), "
      f"{len(unviable)} unviable, {len(timeout)} timed out (counted as caught), in {elapsed // 60} min {elapsed % 60} s")
for m in sorted(new.elements()):
    print(f"  SURVIVED (not in {listing}): {m}")
for m in sorted(stale.elements()):
    print(f"  STALE (in {listing}, no longer survives): {m}")
sys.exit(1 if new or stale else 0)
PY
