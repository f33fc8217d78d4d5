"""Scenario S1 (direct peers): the round's committee of prosumers runs the market nodes.

Node j is participant ``spec.committee[j]`` (drawn by the lottery in ``committee``). It
Shamir-shares its own order vectors and sends node k only package k; the other peers' packages
arrive as from any client. After clearing, node k returns to node j only the result shares of
node j's participant, and node j reconstructs its own rows. The clearing itself is the ordinary
MarketNode run.
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


async def exchange_packages(spec, client_shares, own_orders):
    """Complete the client packages (4, participants, slots, width) with the committee's own:
    own_orders is this node's participant's (slots, width) vector; shares stay in participant order."""
    packages = ff.share_values(own_orders[None], spec.threshold, spec.nodes)  # each (4, 1, S, W)
    incoming = await _ring_exchange(packages)
    shares = np.array(client_shares)
    shares[:, spec.committee] = np.concatenate(incoming, axis=1)
    return shares, list(spec.participants)


async def return_results(spec, results):
    """results: (4, participants, slots, fields) shares -> this node's own participant's shares
    from all nodes."""
    outgoing = [results[:, p:p + 1] for p in spec.committee]
    incoming = await _ring_exchange(outgoing)
    return np.concatenate(incoming, axis=1)  # (4, m nodes, 1 participant..) -> per node share


def own_results(spec, shares_from_nodes):
    """Reconstruct this participant's (slots, fields) results from the m nodes' shares."""
    ints = [ff.to_ints(shares_from_nodes[:, j, :, :]) for j in range(spec.nodes)]
    values, consistent = ff.recombine(ints, spec.threshold)
    if not consistent.all():
        raise RuntimeError('inconsistent result shares')
    return np.array(ff.signed(values), dtype=np.int64)
