#!/usr/bin/env bash
# Network namespaces for a multi-host rehearsal on one machine (root; iproute2):
#   parties/netns.sh up N [DELAY_MS]   namespaces mm-node0..N-1, each with a veth link to bridge
#                                      mm-br0 (10.77.0.1/24); node i is 10.77.0.(10+i); optional
#                                      netem delay on every node's outgoing traffic (one way)
#   parties/netns.sh down N            remove them again
# Then: mpc-market up --dir DIR --netns  (each node runs with `ip netns exec mm-node<i>`).
set -euo pipefail
action=${1:?usage: netns.sh up|down N [DELAY_MS]}
nodes=${2:-3}
delay=${3:-0}
bridge=mm-br0

down() {
    for ((i = 0; i < nodes; i++)); do
        ip netns del "mm-node$i" 2>/dev/null || true
        ip link del "mm-v$i" 2>/dev/null || true
    done
    ip link del "$bridge" 2>/dev/null || true
}

if [ "$action" = down ]; then
    down
    exit 0
fi
[ "$action" = up ] || { echo "error: action must be up or down" >&2; exit 2; }
down
ip link add "$bridge" type bridge
ip addr add 10.77.0.1/24 dev "$bridge"
ip link set "$bridge" up
for ((i = 0; i < nodes; i++)); do
    ns="mm-node$i"
    ip netns add "$ns"
    ip link add "mm-v$i" type veth peer name "mm-p$i"
    ip link set "mm-p$i" netns "$ns"
    ip link set "mm-v$i" master "$bridge" up
    ip netns exec "$ns" ip addr add "10.77.0.$((10 + i))/24" dev "mm-p$i"
    ip netns exec "$ns" ip link set "mm-p$i" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via 10.77.0.1
    if [ "$delay" != 0 ] && ! ip netns exec "$ns" tc qdisc add dev "mm-p$i" root netem delay "${delay}ms"; then
        echo "error: netem is not available in this kernel (sch_netem); use benchmarks/latency_proxy.py" >&2
        down
        exit 1
    fi
done
echo "namespaces mm-node0..$((nodes - 1)) up on $bridge (10.77.0.10-$((9 + nodes))), added delay ${delay} ms"
