#!/bin/sh
# Builds privnet, privnet-cni and the bench binaries in release mode, then
# runs the four system benches (each brings up its own sandbox and tears it
# down; each is bounded by its own timeouts, < 3 min). Needs root. The soak
# (10,000 ADD/DEL cycles, ~15 min) runs only when named. Usage:
#   e2e/bench/run-benches.sh [datapath|dns|cni|sandbox|soak ...]
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p privnet -p privnet-cni
cargo build --release -p privnet-e2e --bins
benches=${*:-datapath dns cni sandbox}
status=0
for b in $benches; do
    echo "=== bench-$b"
    set --
    # The plugin as shipped: the static release build.
    if [ "$b" = cni ]; then set -- --plugin "$(scripts/build-cni-static)"; fi
    "./target/release/bench-$b" "$@" || { echo "bench-$b failed" >&2; status=1; }
done
exit $status
