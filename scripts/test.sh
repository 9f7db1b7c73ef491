#!/usr/bin/env bash
# Runs every Cairn test on a fresh machine: installs what is missing, checks
# the consensus crate's dependency boundary, then runs the whole workspace's
# tests in the `checked` profile: release's optimisation with overflow
# checks and debug assertions on in Cairn's own crates (Cargo.toml).
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# A C/C++ compiler builds libsecp256k1 and RocksDB; libclang generates
# RocksDB's bindings.
missing=()
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v c++ >/dev/null 2>&1 || missing+=(g++)
# (libclang itself: libclang-cpp, which some images ship alone, is not enough.)
if ! ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
     /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so* >/dev/null 2>&1; then
  missing+=(libclang-dev)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]}..."
  as_root apt-get update -qq
  as_root apt-get install -y -qq "${missing[@]}"
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

# The whole-system tests run the binaries: build them first, in the same
# profile and with the tests' features (`--tests` unifies the
# dev-dependencies' features in, as `cargo test` does), so the tests find
# them ready and no dependency compiles twice.
cargo build --profile checked --workspace --bins --tests --locked

log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --profile checked --workspace --locked "$@" 2>&1 | tee "$log"
# One closing line for the whole run (cargo's last line is a doc-test binary's).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
