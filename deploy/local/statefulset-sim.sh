#!/usr/bin/env bash
# Runs the lonelypsd command line of deploy/kubernetes/statefulset.yaml, as
# rendered for each pod (deploy/check -pod-args), as three processes on this
# machine, and plays what Kubernetes does to the pods:
#   1. first start, all three at once (podManagementPolicy: Parallel);
#   2. a pod rescheduled: same volume, new IP address;
#   3. a pod whose volume was lost: same name, empty data folder;
#   4. every pod restarted;
#   5. scaled up to four: lonelypsd-3 joins by itself;
#   6. scaled down to three: lonelypsd-3 stopped, then taken out of the
#      cluster with `lonelypsd cluster remove` (docs/operations.md).
# After each step every pod must be ready (GET /readyz), in one cluster whose
# voters are the pods, known by their DNS names, all caught up, and a
# subscription made through one pod must receive a message published through
# another.
#
# DNS is what Kubernetes gives a StatefulSet under a headless Service: the
# script runs in a private mount namespace (unshare -m, so root and Linux)
# whose /etc/hosts maps each pod's stable name to its own loopback address
# and the headless Service name to all three. Only the bind host
# (0.0.0.0 -> the pod's loopback address, all pods sharing this machine),
# --data-dir and --secrets differ from the manifest. About 30 seconds.
#
#   bash deploy/local/statefulset-sim.sh            # builds bin/lonelypsd first
#   BIN=/path/to/lonelypsd bash deploy/local/statefulset-sim.sh
set -euo pipefail
if [ -z "${SIM_IN_NAMESPACE:-}" ]; then
  exec unshare -m --propagation private env SIM_IN_NAMESPACE=1 bash "$0" "$@"
fi
cd "$(dirname "$0")/../.."
export PATH="/usr/local/go/bin:$PATH"
root=$PWD
work=$(mktemp -d)
pids=(0 0 0 0)
n=3 # replicas
listener=0
cleanup() {
  for p in "${pids[@]}" "$listener"; do
    if [ "$p" != 0 ]; then kill -TERM "$p" 2>/dev/null || true; fi
  done
  wait 2>/dev/null || true
  umount /etc/hosts 2>/dev/null || true
  if [ "${KEEP:-}" = "" ]; then rm -rf "$work"; else echo "kept $work"; fi
}
trap cleanup EXIT

BIN=${BIN:-}
if [ -z "$BIN" ]; then
  go build -o bin/lonelypsd ./cmd/lonelypsd
  BIN=$root/bin/lonelypsd
fi
NS=sim
SVC=lonelypsd-internal.$NS.svc.cluster.local
ip=(127.0.10.1 127.0.10.2 127.0.10.3 127.0.10.5)

write_hosts() {
  {
    echo "127.0.0.1 localhost"
    for ((i = 0; i < n; i++)); do echo "${ip[$i]} lonelypsd-$i.$SVC $SVC"; done
  } >"$work/hosts"
}
write_hosts
mount --bind "$work/hosts" /etc/hosts

"$BIN" setup --dir "$work" >/dev/null
for i in 0 1 2 3; do
  (cd deploy/check && go run . -kustomize ../kubernetes -dockerfile ../Dockerfile \
    -pod-args "lonelypsd-$i" -namespace "$NS") >"$work/args-$i"
done
echo "the manifest's command line of lonelypsd-0:"
sed 's/^/  /' "$work/args-0"

fail() {
  echo "FAIL: $*" >&2
  for ((i = 0; i < n; i++)); do
    echo "--- lonelypsd-$i log (last lines)" >&2
    tail -n 15 "$work/lonelypsd-$i.log" >&2 || true
  done
  exit 1
}

start() { # start POD-ORDINAL
  local i=$1 a args=()
  while IFS= read -r a; do
    case $a in
      --http-addr=0.0.0.0:*) a="--http-addr=${ip[$i]}:${a##*:}" ;;
      --raft-addr=0.0.0.0:*) a="--raft-addr=${ip[$i]}:${a##*:}" ;;
      --data-dir=*) a="--data-dir=$work/data-$i" ;;
      --secrets=*) a="--secrets=$work/broadcaster-secrets.json" ;;
    esac
    args+=("$a")
  done <"$work/args-$i"
  "$BIN" "${args[@]}" 2>>"$work/lonelypsd-$i.log" &
  pids[i]=$!
}

stop() { # stop POD-ORDINAL: SIGTERM, as the kubelet does; must exit well within the 30 s grace period
  local i=$1 t0=$SECONDS
  kill -TERM "${pids[$i]}"
  wait "${pids[$i]}" || fail "lonelypsd-$i exited non-zero after SIGTERM"
  pids[i]=0
  [ $((SECONDS - t0)) -lt 20 ] || fail "lonelypsd-$i took $((SECONDS - t0)) s to stop"
}

http_get() { # http_get HOST PORT PATH -> status code
  local code
  code=$(timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2 && printf 'GET $3 HTTP/1.0\r\nHost: $1\r\n\r\n' >&3 && head -n 1 <&3" 2>/dev/null | awk '{print $2}') || true
  echo "${code:-000}"
}

applied() { # applied POD-ORDINAL: the pod's applied Raft index
  "$BIN" cluster status --addr "lonelypsd-$1.$SVC:3003" --json 2>/dev/null | sed -n 's/.*"applied_index": \([0-9]*\).*/\1/p'
}

wait_ready() { # wait_ready WHAT START: every pod ready, n voters by DNS name, all caught up
  local deadline=$((SECONDS + 40)) i all st a0
  while :; do
    all=1
    for ((i = 0; i < n; i++)); do
      [ "$(http_get "${ip[$i]}" 3003 /readyz)" = 200 ] || all=0
    done
    if [ $all = 1 ]; then
      st=$("$BIN" cluster status --addr "lonelypsd-0.$SVC:3003" --json 2>/dev/null || true)
      a0=$(applied 0)
      for ((i = 1; i < n; i++)); do
        [ -n "$a0" ] && [ "$(applied "$i")" = "$a0" ] || all=0
      done
      if [ $all = 1 ] && [ "$(grep -c "\"raft\": \"lonelypsd-[0-9]*.$SVC:4003\"" <<<"$st")" = $n ] &&
        [ "$(grep -c '"voter": true' <<<"$st")" = $n ]; then
        echo "ok: $1 ($((SECONDS - $2)) s)"
        return
      fi
    fi
    [ $SECONDS -lt $deadline ] || fail "$1: not $n ready, caught-up voters within 40 s; status: ${st:-none}"
    sleep 0.5
  done
}

delivery() { # delivery STEP: subscribe through pod A, publish through pod B
  local a=$1 b=$2 topic="sim/step-$3" port out
  port=$((20000 + RANDOM % 20000))
  "$BIN" listen --addr "http://lonelypsd-$a.$SVC:3003" --listen "127.0.0.1:$port" \
    --secrets "$work/subscriber-secrets.json" --topic "$topic" >"$work/listen-$3.out" 2>&1 &
  listener=$!
  local deadline=$((SECONDS + 15))
  until grep -q "^listening on" "$work/listen-$3.out"; do # subscribed through pod A
    [ $SECONDS -lt $deadline ] || fail "step $3: subscribing through lonelypsd-$a failed: $(cat "$work/listen-$3.out")"
    sleep 0.2
  done
  until out=$("$BIN" notify --addr "http://lonelypsd-$b.$SVC:3003" --secrets "$work/subscriber-secrets.json" \
    --topic "$topic" --message "hello $3" 2>&1) && grep -q "delivered to 1 " <<<"$out"; do
    [ $SECONDS -lt $deadline ] || fail "step $3: publish through lonelypsd-$b never reached the subscriber of lonelypsd-$a: $out"
    sleep 0.3
  done
  sleep 0.3
  kill -TERM "$listener" 2>/dev/null || true
  wait "$listener" 2>/dev/null || true
  listener=0
  grep -q "hello $3" "$work/listen-$3.out" || fail "step $3: the subscriber printed nothing: $(cat "$work/listen-$3.out")"
  echo "ok: subscribed through lonelypsd-$a, delivered through lonelypsd-$b"
}

t0=$SECONDS
for i in 0 1 2; do start "$i"; done
wait_ready "1. first start, three pods at once" "$t0"
delivery 0 2 1

t0=$SECONDS
stop 1
ip[1]=127.0.10.4
write_hosts
start 1
wait_ready "2. lonelypsd-1 rescheduled to a new address (${ip[1]}), same volume" "$t0"
delivery 1 0 2

t0=$SECONDS
stop 2
rm -rf "$work/data-2"
start 2
wait_ready "3. lonelypsd-2 back with an empty volume" "$t0"
delivery 2 1 3

t0=$SECONDS
for i in 0 1 2; do stop "$i"; done
for i in 0 1 2; do start "$i"; done
wait_ready "4. every pod restarted" "$t0"
delivery 0 1 4

t0=$SECONDS
n=4
write_hosts
start 3
wait_ready "5. scaled up: lonelypsd-3 joined" "$t0"
delivery 3 0 5

t0=$SECONDS
stop 3
n=3
write_hosts
"$BIN" cluster remove lonelypsd-3 --addr "lonelypsd-1.$SVC:3003" --secrets "$work/broadcaster-secrets.json" ||
  fail "cluster remove lonelypsd-3"
wait_ready "6. scaled down: lonelypsd-3 stopped and removed" "$t0"
delivery 2 1 6

if grep -h '"level":"ERROR"' "$work"/lonelypsd-*.log; then fail "errors in the logs"; fi
echo "statefulset-sim: all steps passed"
