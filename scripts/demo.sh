#!/usr/bin/env bash
# make demo: a sandbox (two network namespaces joined by veth, a private
# bpffs), leafd on embedded defaults, the quickstart state, real traffic,
# and what the programs did. Everything it makes is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" = 0 ] || { echo "make demo needs root (it creates network namespaces and loads BPF programs)" >&2; exit 1; }

BIN=${BIN:-bin}   # where leaf and leafd are (make build: bin/)
WORK=$(mktemp -d /tmp/leaf-demo.XXXXXX)
BPFFS=$WORK/bpffs
SOCK=$WORK/leafd.sock
LEAF="$BIN/leaf --socket $SOCK"
LEAFD_PID=
CONSOLE_PID=

cleanup() {
	set +e
	if [ -n "$CONSOLE_PID" ]; then kill "$CONSOLE_PID" 2>/dev/null; wait "$CONSOLE_PID" 2>/dev/null; fi
	if [ -n "$LEAFD_PID" ]; then kill "$LEAFD_PID" 2>/dev/null; wait "$LEAFD_PID" 2>/dev/null; fi
	ip netns del leaf-demo-a 2>/dev/null
	ip netns del leaf-demo-b 2>/dev/null
	umount "$BPFFS" 2>/dev/null   # unpinning everything detaches the programs
	rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "sandbox: netns leaf-demo-a (10.99.0.1) <-veth-> leaf-demo-b (10.99.0.2), private bpffs at $BPFFS"
ip netns del leaf-demo-a 2>/dev/null || true
ip netns del leaf-demo-b 2>/dev/null || true
ip netns add leaf-demo-a
ip netns add leaf-demo-b
ip link add veth-a netns leaf-demo-a type veth peer name veth-b netns leaf-demo-b
ip -n leaf-demo-a addr add 10.99.0.1/24 dev veth-a
ip -n leaf-demo-b addr add 10.99.0.2/24 dev veth-b
ip -n leaf-demo-a link set veth-a up
ip -n leaf-demo-b link set veth-b up
ip -n leaf-demo-a link set lo up
ip -n leaf-demo-b link set lo up
mkdir -p "$BPFFS"
mount -t bpf bpf "$BPFFS"

step "start leafd (local state store, built-in package repository)"
"$BIN/leafd" --state-dir "$WORK/state" --bpffs "$BPFFS" --socket "$SOCK" \
	--metrics-address 127.0.0.1:0 --bpf-stats --log-level warn &
LEAFD_PID=$!
for _ in $(seq 50); do $LEAF status >/dev/null 2>&1 && break; sleep 0.1; done

step "leaf packages"
$LEAF packages

step "leaf apply -f examples/quickstart.yaml"
$LEAF apply -f examples/quickstart.yaml

step "traffic: 20 UDP datagrams each to ports 8080 (blocked), 9090 and 9999 (blocked); 5 pings"
ip netns exec leaf-demo-a bash -c '
	for i in $(seq 20); do
		for p in 8080 9090 9999; do echo "hello $i" > /dev/udp/10.99.0.2/$p; done
	done'
ip netns exec leaf-demo-a ping -c 5 -i 0.2 -q 10.99.0.2 | tail -2
for _ in 1 2 3; do /bin/true; done

step "what the programs did"
echo "packets arriving in leaf-demo-b, counted by the first program of the XDP chain (count-ingress, map counters: key 0 packets, key 1 bytes):"
$LEAF maps count-ingress counters
echo
echo "packets dropped by destination port by the second (drop-ports, map drops):"
$LEAF maps drop-ports drops
echo
echo "passed (key 0) and dropped (key 1) in total (drop-ports, map totals):"
$LEAF maps drop-ports totals
echo
echo "UDP datagrams that reached leaf-demo-b's stack (only port 9090 got through):"
ip netns exec leaf-demo-b awk '/^Udp:/ { if (!h) { split($0, k); h=1 } else { split($0, v); for (i=2;i<=NF;i++) if (k[i]=="InDatagrams"||k[i]=="NoPorts") printf "  %s %s\n", k[i], v[i] } }' /proc/net/snmp
echo
echo "packets leaving leaf-demo-b (count-egress, map counters: key 0 packets, key 1 bytes):"
$LEAF maps count-egress counters
echo
echo "exec calls per uid (count-execs, map execs):"
$LEAF maps count-execs execs

step "leaf status"
$LEAF status

step "re-apply: nothing changes"
$LEAF apply -f examples/quickstart.yaml

step "reorder the chain (drop first, then count) while it runs: one atomic switch"
sed 's/priority: 10/priority: 30/' examples/quickstart.yaml | $LEAF apply -f -
$LEAF status | awk 'NR == 1 || /xdp/'

step "drift: detach the XDP chain's link behind leafd's back (bpftool link detach); leafd notices and restores it"
link_id=$($LEAF status | awk '$1 == "drop-ports" { print $(NF-2) }')
if [ -n "$link_id" ] && bpftool link detach id "$link_id" 2>/dev/null; then
	sleep 1.5
	$LEAF events | tail -4
	$LEAF status | awk 'NR == 1 || /xdp/'
else
	echo "(bpftool could not detach link $link_id; skipped)"
fi

step "rate limiting: leaf apply -f examples/ratelimit.yaml (UDP to 7777 held to 200/s, burst 20, chained before a counter)"
$LEAF apply -f examples/ratelimit.yaml
echo "flooding 10.99.0.2:7777 from leaf-demo-a for 2 seconds..."
ip netns exec leaf-demo-a bash -c '
	exec 3>/dev/udp/10.99.0.2/7777
	start=${EPOCHREALTIME/./}; end=$((start + 2000000)); n=0
	while (( ${EPOCHREALTIME/./} < end )); do echo x >&3 2>/dev/null && n=$((n + 1)); done
	echo "sent $n datagrams ($((n / 2)) per second)"'
echo "the limiter (flood-guard, map rl_stats: key 0 passed, key 1 dropped, key 2 other traffic):"
$LEAF maps flood-guard rl_stats
echo "expected to pass: burst 20 + 200/s x 2 s = 420 (the counter behind it, count-passed, saw them plus other traffic):"
$LEAF maps count-passed counters

step "web console: leaf console serves leafd's console on 127.0.0.1 behind a one-time login link"
$LEAF console >"$WORK/console.out" &
CONSOLE_PID=$!
for _ in $(seq 100); do grep -q '^leaf console: ' "$WORK/console.out" 2>/dev/null && break; sleep 0.1; done
echo "console: $(sed -n 's/^leaf console: //p' "$WORK/console.out")"
if [ -t 0 ] && [ -t 1 ]; then
	echo "open it in a browser on this host; Ctrl-C ends the demo and cleans up"
	wait "$CONSOLE_PID" || true
fi

step "cleanup: stop leafd, delete the namespaces, unmount the private bpffs"
