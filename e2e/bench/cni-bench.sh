#!/bin/sh
# ADD/DEL latency and ADD -> first reply (exec of ADD to the first ICMP echo
# reply from the gateway and from a peer) of privnet-cni as shipped (the
# static release build) vs the reference bridge+host-local plugins
# (isGateway), against the real agent of a sandbox node
# (e2e/src/bin/bench-cni.rs).
# Needs root. Extra arguments go to bench-cni, e.g.
#   e2e/bench/cni-bench.sh --runs 200 --parallel 16
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p privnet -p privnet-cni
cargo build --release -p privnet-e2e --bin bench-cni
plugin=$(scripts/build-cni-static)
exec ./target/release/bench-cni --plugin "$plugin" "$@"
