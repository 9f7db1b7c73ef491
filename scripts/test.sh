#!/usr/bin/env bash
# Runs every Cairn test on a fresh machine: installs what is missing, checks
# the consensus crate's dependency boundary, then runs the whole workspace's
# tests in the one build profile the project uses (release).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A C compiler builds libsecp256k1 (secp256k1-sys).
if ! command -v cc >/dev/null 2>&1; then
  echo "installing a C toolchain (build-essential)..."
  as_root apt-get update -qq
  as_root apt-get install -y -qq build-essential
fi
command -v cargo >/dev/null 2>&1 || { echo "error: cargo is not installed (https://rustup.rs)" >&2; exit 1; }

vectors="${CAIRN_VECTORS:-../shared/vectors}"
if [ ! -d "$vectors" ]; then
  echo "error: the published test vectors are missing: expected $vectors (set CAIRN_VECTORS)" >&2
  exit 1
fi

# The consensus crate stays pure: none of these may be in its dependency tree.
forbidden=$(cargo tree -p cairn-consensus -e normal --prefix none --format '{p}' | awk '{print $1}' \
  | grep -E '^(tokio|libp2p|rocksdb|rayon|clap)$' || true)
if [ -n "$forbidden" ]; then
  echo "error: cairn-consensus depends on: $forbidden" >&2
  exit 1
fi
echo "cairn-consensus dependency boundary: ok"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --locked "$@" 2>&1 | tee "$log"
# One closing line for the whole run (cargo's last line is a doc-test binary's).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
