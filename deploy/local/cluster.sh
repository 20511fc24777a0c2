#!/usr/bin/env bash
# Runs a three-node lonelypsd cluster on this machine:
#   node n1: HTTP 127.0.0.1:3003, Raft 127.0.0.1:4003
#   node n2: HTTP 127.0.0.1:3013, Raft 127.0.0.1:4013
#   node n3: HTTP 127.0.0.1:3023, Raft 127.0.0.1:4023
# Every node gets the same --join list and --bootstrap-expect 3, which is
# right for the first start, a restart, and a node whose data was wiped.
# Data lives in ${DATA:-./lonelypsd-cluster}/n{1,2,3}; logs beside it.
# Ctrl-C stops all three.
set -euo pipefail
BIN=${BIN:-bin/lonelypsd}
DATA=${DATA:-./lonelypsd-cluster}
JOIN=127.0.0.1:3003,127.0.0.1:3013,127.0.0.1:3023
mkdir -p "$DATA"
if [ ! -f "$DATA/broadcaster-secrets.json" ]; then
  "$BIN" setup --dir "$DATA" --to-broadcaster-auth none --to-subscriber-auth none >/dev/null
fi
pids=()
for i in 1 2 3; do
  port=$((3003 + (i - 1) * 10))
  "$BIN" serve --node-id "n$i" --http-addr "127.0.0.1:$port" --raft-addr "127.0.0.1:$((port + 1000))" \
    --data-dir "$DATA/n$i" --join "$JOIN" --bootstrap-expect 3 \
    --secrets "$DATA/broadcaster-secrets.json" "$@" 2>"$DATA/n$i.log" &
  pids+=($!)
done
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM
echo "three nodes starting; logs in $DATA/n{1,2,3}.log; try: $BIN cluster status --addr 127.0.0.1:3003"
wait
