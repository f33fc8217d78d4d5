#!/usr/bin/env bash
# Network namespaces for a multi-host rehearsal on one machine (root; iproute2):
#   parties/netns.sh up N [DELAY_MS]   namespaces mm-node0..N-1, each with a veth link to bridge
#                                      mm-br0 (10.77.0.1/24); node i is 10.77.0.(10+i); optional
#                                      netem delay on every node's outgoing traffic (one way)
#   parties/netns.sh down N            remove them again
# Then: mpc-market up --dir DIR --netns  (each node runs with `ip netns exec mm-node<i>`).
# NETNS_PREFIX (default mm, at most 6 characters) and NETNS_SUBNET (default 10.77.0) rename
# everything, so two runs on one host (e.g. two test runs) cannot collide.
set -euo pipefail
action=${1:?usage: netns.sh up|down N [DELAY_MS]}
nodes=${2:-3}
delay=${3:-0}
prefix=${NETNS_PREFIX:-mm}
subnet=${NETNS_SUBNET:-10.77.0}
[[ "$prefix" =~ ^[a-z][a-z0-9]{0,5}$ ]] || { echo "error: NETNS_PREFIX must be 1-6 of [a-z0-9]" >&2; exit 2; }
[[ "$subnet" =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || { echo "error: NETNS_SUBNET must be 10.X.Y" >&2; exit 2; }
bridge=$prefix-br0

down() {
    for ((i = 0; i < nodes; i++)); do
        ip netns del "$prefix-node$i" 2>/dev/null || true
        ip link del "$prefix-v$i" 2>/dev/null || true
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
ip addr add "$subnet.1/24" dev "$bridge"
ip link set "$bridge" up
for ((i = 0; i < nodes; i++)); do
    ns="$prefix-node$i"
    ip netns add "$ns"
    ip link add "$prefix-v$i" type veth peer name "$prefix-p$i"
    ip link set "$prefix-p$i" netns "$ns"
    ip link set "$prefix-v$i" master "$bridge" up
    ip netns exec "$ns" ip addr add "$subnet.$((10 + i))/24" dev "$prefix-p$i"
    ip netns exec "$ns" ip link set "$prefix-p$i" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip route add default via "$subnet.1"
    if [ "$delay" != 0 ] && ! ip netns exec "$ns" tc qdisc add dev "$prefix-p$i" root netem delay "${delay}ms"; then
        echo "error: netem is not available in this kernel (sch_netem); use mpc-market up --delay-ms (a TCP delay proxy)" >&2
        down
        exit 1
    fi
done
echo "namespaces $prefix-node0..$((nodes - 1)) up on $bridge ($subnet.10-$((9 + nodes))), added delay ${delay} ms"
