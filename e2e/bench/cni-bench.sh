#!/bin/sh
# ADD/DEL latency of privnet-cni vs the reference bridge+host-local plugins.
# Needs root. Extra arguments go to cni-bench, e.g.
#   e2e/bench/cni-bench.sh --agent-socket /run/privnet/agent.sock
set -eu
cd "$(dirname "$0")/../.."
cargo build --release -p privnet-cni
exec ./target/release/cni-bench "$@"
