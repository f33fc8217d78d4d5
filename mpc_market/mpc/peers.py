"""Scenario S1 (direct peers): every prosumer runs its own market node.

Node i is participant i. It Shamir-shares its own order vectors and sends node j only
package j; after clearing, node j returns to node i only the result shares of participant i,
and node i reconstructs its own rows. The clearing itself is the ordinary MarketNode run.
"""

import numpy as np
from mpyc.runtime import mpc

from . import field as ff


async def _ring_exchange(outgoing):
    """outgoing[j] goes to node j; returns incoming[i] received from node i (own kept)."""
    m, me = len(mpc.parties), mpc.pid
    incoming = [None] * m
    incoming[me] = outgoing[me]
    for d in range(1, m):
        sender_receivers = {i: [(i + d) % m] for i in range(m)}
        received = await mpc.transfer(outgoing[(me + d) % m], sender_receivers=sender_receivers)
        incoming[(me - d) % m] = received[0]
    return incoming


async def exchange_packages(spec, own_orders):
    """own_orders: (slots, width) vector of this node's participant -> shares (4, m, slots, width)."""
    packages = ff.share_values(own_orders[None], spec.threshold, spec.nodes)  # each (4, 1, S, W)
    incoming = await _ring_exchange(packages)
    shares = np.concatenate(incoming, axis=1)
    return shares, list(spec.participants)


async def return_results(spec, results):
    """results: (4, m, slots, 3) shares -> this node's own participant's shares from all nodes."""
    outgoing = [results[:, j:j + 1] for j in range(spec.nodes)]
    incoming = await _ring_exchange(outgoing)
    return np.concatenate(incoming, axis=1)  # (4, m nodes, 1 participant..) -> per node share


def own_results(spec, shares_from_nodes):
    """Reconstruct this participant's (slots, 3) results from the m nodes' shares."""
    ints = [ff.to_ints(shares_from_nodes[:, j, :, :]) for j in range(spec.nodes)]
    values, consistent = ff.recombine(ints, spec.threshold)
    if not consistent.all():
        raise RuntimeError('inconsistent result shares')
    return np.array(ff.signed(values), dtype=np.int64)
