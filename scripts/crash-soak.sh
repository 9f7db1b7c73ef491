#!/usr/bin/env bash
# The crash soak (in the manner of Bitcoin Core's feature_dbcrash): nodes
# fed the same blocks, with transactions and reorganizations, over RPC; one
# never killed, the others killed with SIGKILL at random moments (some
# again while they recover); after every restart a victim's UTXO digest
# must equal the reference's at the same tip. Prints one summary line:
# kills, kills during recovery, restarts checked, mismatches.
#
#   scripts/crash-soak.sh          # 20 kills
#   scripts/crash-soak.sh 1000     # the recorded run
#   CAIRN_SOAK_SEED=123 scripts/crash-soak.sh 50   # repeat a run
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-20}"
case "$kills" in ''|*[!0-9]*) echo "usage: scripts/crash-soak.sh [KILLS]" >&2; exit 2 ;; esac
if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$HOME/.cache/cairn-target" ]; then
  export CARGO_TARGET_DIR="$HOME/.cache/cairn-target"
fi
cargo build --profile checked --workspace --bins --tests --locked
CAIRN_SOAK_KILLS="$kills" cargo test --profile checked --locked --test system -- \
  --ignored --exact soak::crash_soak --nocapture
