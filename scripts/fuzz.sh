#!/usr/bin/env bash
# Runs every fuzz target (or those named) for SECONDS each (default 60),
# starting from the committed seeds in fuzz/corpus/<target> and keeping what
# it finds in a work corpus outside the clone. Installs the nightly
# toolchain and cargo-fuzz when they are missing. Ends with one line per
# target: executions, coverage, and whether it crashed; exits non-zero on
# any crash (the input is kept under fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh            # 60 s each
#   scripts/fuzz.sh 10         # what CI runs
#   scripts/fuzz.sh 1200 rpc   # one target, long
#   CAIRN_FUZZ_RUNS=10000000 scripts/fuzz.sh 3600   # 10 million inputs each
#                              (or an hour, whichever comes first)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
case "$seconds" in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --version =0.13.1 --locked
fi

# Kept outside the clone, like the tests' target directory, so a second
# run does not rebuild; the work corpus likewise.
cache="${CAIRN_FUZZ_CACHE:-$HOME/.cache/cairn-fuzz}"
mkdir -p "$cache/corpus"
# Safe Rust needs no address sanitizer; overflow checks and debug
# assertions are on, as in the tests.
flags=(--release --sanitizer none --debug-assertions --target-dir "$cache/target")

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
(cd fuzz && cargo +nightly fuzz build "${flags[@]}")

summary=()
failed=0
for target in "${targets[@]}"; do
  work="$cache/corpus/$target"
  mkdir -p "$work"
  log="$cache/$target.log"
  echo "fuzzing $target for ${seconds}s..."
  set +e
  runs=()
  if [ -n "${CAIRN_FUZZ_RUNS:-}" ]; then runs=(-runs="$CAIRN_FUZZ_RUNS"); fi
  (cd fuzz && cargo +nightly fuzz run "${flags[@]}" "$target" "$work" "corpus/$target" -- \
    -max_total_time="$seconds" "${runs[@]}" -timeout=20 -rss_limit_mb=4096 -print_final_stats=1) >"$log" 2>&1
  status=$?
  set -e
  execs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
  if [ "$status" -eq 0 ]; then
    summary+=("$(printf '%-20s %12s execs  %-22s ok' "$target" "${execs:-?}" "${cov:-}")")
  else
    failed=1
    tail -40 "$log"
    summary+=("$(printf '%-20s %12s execs  %-22s FAILED (see %s)' "$target" "${execs:-?}" "${cov:-}" "$log")")
  fi
done
printf '%s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  echo "fuzzing: a target failed" >&2
  exit 1
fi
echo "fuzzing: ${#targets[@]} targets, no crash"
