"""Scenario S1 (direct peers): the round's committee of prosumers runs the market nodes.

Node j is participant ``spec.committee[j]`` (drawn by the lottery in ``committee``). It
Shamir-shares its own order vectors and sends node k only package k; the other peers' packages
arrive as from any client. After clearing, node k returns to node j only the result shares of
node j's participant, and node j reconstructs its own rows. The clearing itself is the ordinary
MarketNode run.
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from ..common.errors import EngineError
from . import field as ff
from .jobs import JobSpec


async def _ring_exchange(outgoing: Sequence[np.ndarray]) -> list[np.ndarray]:
    """outgoing[j] goes to node j; returns incoming[i] received from node i (own kept)."""
    m, me = len(mpc.parties), mpc.pid
    incoming: list[Any] = [None] * m  # mpc.transfer's values (untyped); every entry is set below
    incoming[me] = outgoing[me]
    for d in range(1, m):
        sender_receivers = {i: [(i + d) % m] for i in range(m)}
        received = await mpc.transfer(outgoing[(me + d) % m], sender_receivers=sender_receivers)
        incoming[(me - d) % m] = received[0]
    return incoming


async def exchange_packages(spec: JobSpec, client_shares: np.ndarray,
                            own_orders: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Complete the client packages with the committee's own.

    Args:
        spec: the job (committee, threshold, nodes, participants).
        client_shares: the packages received from clients, (4, participants, slots, width).
        own_orders: this node's participant's (slots, width) vector.

    Returns:
        (every participant's shares in participant order, the participants).
    """
    packages = ff.share_values(own_orders[None], spec.threshold, spec.nodes)  # each (4, 1, S, W)
    incoming = await _ring_exchange(packages)
    shares = np.array(client_shares)
    shares[:, spec.committee] = np.concatenate(incoming, axis=1)
    return shares, list(spec.participants)


async def return_results(spec: JobSpec, results: np.ndarray) -> np.ndarray:
    """Send each committee member its own rows' shares and receive this node's participant's.

    Args:
        spec: the job (committee).
        results: this node's result shares (4, participants, slots, fields).

    Returns:
        This node's participant's shares from all nodes, (4, m nodes, slots, fields).
    """
    outgoing = [results[:, p:p + 1] for p in spec.committee]
    incoming = await _ring_exchange(outgoing)
    return np.concatenate(incoming, axis=1)  # (4, m nodes, 1 participant..) -> per node share


def own_results(spec: JobSpec, shares_from_nodes: np.ndarray) -> np.ndarray:
    """Reconstruct this participant's results from the m nodes' shares.

    Args:
        spec: the job (nodes, threshold).
        shares_from_nodes: from return_results, (4, m, slots, fields).

    Returns:
        int64 array (slots, fields) of the signed results.

    Raises:
        EngineError: the shares do not lie on one polynomial (a node returned inconsistent shares).
    """
    ints = [ff.to_ints(shares_from_nodes[:, j, :, :]) for j in range(spec.nodes)]
    values, consistent = ff.recombine(ints, spec.threshold)
    if not consistent.all():
        raise EngineError('the result shares from the nodes are inconsistent')
    return np.array(ff.signed(values), dtype=np.int64)
