#!/usr/bin/env bash
# Mutation testing of the echo core: cargo-mutants makes small changes to the code (flip a
# comparison, replace a function body with a default value, ...) and runs the library's own
# tests against each; a mutant that no test notices ("survived") marks behaviour the tests do
# not pin down. Run it after changing src/worker/, and look at every survivor: either it is
# harmless (say why in your note) or a test is missing.
#
# Usage: scripts/mutants.sh [FILE...]
#   FILE defaults to the sans-IO core, src/worker/echo_state.rs, echo.rs and buffer.rs; any file
#   under src/ can be given (the rest of src/worker/ is mostly covered by the socket tests
#   in tests/, which this does not run).
# Environment:
#   MUTANTS_TIMEOUT  seconds one test run of one mutant may take (default 120; a mutant that
#                    makes the state machine loop for ever is then counted as caught by timeout)
#   MUTANTS_JOBS     mutants built and tested at once (default 1; each needs its own build)
#   MUTANTS_OUT      output directory (default target/mutants; results in mutants.out/)
# It is CPU-heavy (one incremental build per mutant): on a shared machine run it under `nice`.
# Exit status: 0 when every mutant was caught, otherwise cargo-mutants' own (2: survivors).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo mutants --version >/dev/null 2>&1; then
    echo "cargo-mutants is missing; installing it (cargo install --locked cargo-mutants)" >&2
    cargo install --locked cargo-mutants
fi

files=("$@")
if [ ${#files[@]} -eq 0 ]; then
    files=(src/worker/echo_state.rs src/worker/echo.rs src/worker/buffer.rs)
fi
file_args=()
for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "mutants.sh: no such file: $f" >&2; exit 2; }
    file_args+=(--file "$f")
done
out=${MUTANTS_OUT:-target/mutants}
mkdir -p "$out"

status=0
# `--cargo-arg=--lib`: each mutant is built (`cargo test --no-run`) and tested (`cargo test`)
# with only the library's unit and property tests (the sans-IO state machine and its
# simulated sockets), not the binary and the socket tests under tests/, which would triple
# the build time of every mutant.
cargo mutants --package reactor-pool "${file_args[@]}" --cargo-arg=--lib \
    --timeout "${MUTANTS_TIMEOUT:-120}" --jobs "${MUTANTS_JOBS:-1}" \
    --output "$out" --no-shuffle || status=$?

results="$out/mutants.out"
count() { if [ -f "$results/$1" ]; then grep -c . "$results/$1" || true; else echo 0; fi; }
caught=$(count caught.txt) missed=$(count missed.txt)
timeout=$(count timeout.txt) unviable=$(count unviable.txt)
echo
echo "mutants: $((caught + missed + timeout + unviable)) generated; caught $caught," \
    "survived $missed, caught by timeout $timeout, unviable (did not build) $unviable"
if [ -s "$results/missed.txt" ]; then
    echo "survivors:"
    sed 's/^/  /' "$results/missed.txt"
fi
exit "$status"
