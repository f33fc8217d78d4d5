"""Input validation inside MPC: every participant's packages checked with multiplications only.

Import only inside a node process (see mpc_market.mpc.node). Per participant one random linear
combination of its checks (zero iff its order vectors are well formed: one-hot levels, energy
bits, slack up to max_order_wh) is tested for zero and one random combination of its shares is
opened under a fresh mask to test that the shares are consistent; only the verdict is opened.
The meter packages of settlement are checked the same way (mpc_market.mpc.settlement).
"""

from typing import Protocol

import numpy as np
from mpyc.runtime import mpc
from numpy.typing import ArrayLike

from . import field as ff
from . import mpyc_internals as internals
from .mechanism import OrderShares
from .primitives import FIELD, P, reshare_values, to_secure


class CheckedShares(OrderShares, Protocol):
    """What validation reads of a node (mpc_market.mpc.clearing.MarketNode, which imports this module)
    beyond a mechanism's view: its order vectors by chunk and the joint seed's coefficients."""

    def chunk(self, start: int, stop: int) -> np.ndarray: ...

    def coefficients(self, label: str, count: int) -> list[int]: ...


async def verdicts(node: CheckedShares, checks: np.ndarray, mixed: np.ndarray,
                   also_reshare: ArrayLike = ()) -> tuple[np.ndarray, np.ndarray]:
    """Per participant: shares consistent and check == 0, opening nothing else.

    mixed: a random combination of each participant's shares, opened with a fresh PRSS mask at
    all nodes and checked to lie on one degree-t polynomial. checks: degree-2t values, zero iff
    valid: one resharing and one zero test each. also_reshare rides along in the resharing.

    Args:
        node: the node (spec.threshold).
        checks, mixed: shares, one per participant.
        also_reshare: shares to reshare as well (any shape).

    Returns:
        (verdict per participant (bool), also_reshare's fresh shares, flat).
    """
    n = len(checks)
    mask = internals.np_randoms(mpc, FIELD, n)
    if mpc.options.no_prss:
        mask = await mask
    opened = await mpc.transfer([int(v) for v in (mixed + mask.value) % P])
    _, consistent = ff.recombine([np.array(o, dtype=object) for o in opened], node.spec.threshold)
    fresh = await reshare_values(np.concatenate([checks, np.asarray(also_reshare, dtype=object).reshape(-1)]))
    zero = np.asarray(await mpc.np_is_zero_public(to_secure(fresh[:n])), dtype=bool)
    return consistent & zero, fresh[n:]


async def validate_orders(node: CheckedShares, present: np.ndarray) -> np.ndarray:
    """Valid-and-consistent verdict per participant (opened), multiplications only.

    Args:
        node: the node's order shares and joint seed (agree_seed has run).
        present: per participant whether every node holds its packages.

    Returns:
        Per participant (bool) whether its packages are present, well formed and consistent.
    """
    layout = node.layout
    onehot_w = layout.onehot.stop
    weighted_w = layout.weighted.stop - layout.weighted.start
    gamma = node.coefficients('gamma', 1)[0]
    powers = [pow(gamma, j, P) for j in range(onehot_w)]
    powers2 = [pow(gamma, 2 * j, P) for j in range(onehot_w)]
    rho = node.coefficients('rho', 4 + 2 * layout.energy_bits + 1)
    theta = node.coefficients('theta', 2 + 2 * layout.energy_bits)
    lam = np.array(node.coefficients('lambda', 2 * node.n_slots), dtype=object).reshape(2, node.n_slots)
    passed = np.zeros(node.n_participants, dtype=bool)
    for start in range(0, node.n_participants, node.spec.chunk):
        stop = min(start + node.spec.chunk, node.n_participants)
        n = stop - start
        block = node.chunk(start, stop)
        a, b = ff.lincomb(block[:, :, layout.onehot], [powers, powers2]).T
        (wg,) = ff.lincomb(block[:, :, layout.weighted], [powers[:weighted_w]]).T
        no_order = ff.to_ints(block[:, :, layout.no_order])
        onehot_sum = ff.to_ints(block[:, :, layout.onehot].astype(np.uint64).sum(axis=2))
        bits = ff.to_ints(block[:, :, layout.bits])  # (rows, B)
        energy = sum(bits[:, i] << i for i in range(layout.energy_bits))
        a_trade = a - no_order * powers[layout.no_order]
        check = rho[0] * (a * a - b) + rho[1] * (energy * a_trade - wg) + rho[2] * (onehot_sum - 1)
        mix = a + theta[0] * b + theta[1] * wg
        for i in range(layout.energy_bits):
            check += rho[4 + i] * (bits[:, i] * bits[:, i] - bits[:, i])
            mix += theta[2 + i] * bits[:, i]
        if layout.has_slack:
            slack = ff.to_ints(block[:, :, layout.slack])
            slack_value = sum(slack[:, i] << i for i in range(layout.energy_bits))
            check += rho[3] * (energy + slack_value - layout.max_order_wh)
            for i in range(layout.energy_bits):
                j = 4 + layout.energy_bits + i
                check += rho[j] * (slack[:, i] * slack[:, i] - slack[:, i])
                mix += theta[2 + layout.energy_bits + i] * slack[:, i]
        per_participant = (check.reshape(n, node.n_slots) * lam[0]).sum(axis=1) % P
        mixed = (mix.reshape(n, node.n_slots) * lam[1]).sum(axis=1) % P
        ok, _ = await verdicts(node, per_participant, mixed)
        passed[start:stop] = ok & present[start:stop]
        node.progress('validation', stop, node.n_participants)
    return passed
