"""Where a slot's supply and demand curves cross, and the merit order's rationing ratios.

Functions of secret-shared curves and public bounds (no order book): the double auction, each
zone and the cross-zone auction all call them. Import only inside a node process (see
mpc_market.mpc.node).
"""

import math

import numpy as np

from .primitives import P, bits_needed, ceil_fraction, less_than_zero, open_values, reshare_values, sign_of


async def locate_crossing(supply: np.ndarray, demand: np.ndarray, bits: int) -> tuple[np.ndarray, ...]:
    """Shares of k* (the first level with S(k) >= D(k); K if none), S and D at k* and k*-1, and
    [k* >= 1], [k* <= K-1], in two rounds of about 2*sqrt(K) comparisons per row instead of K.

    S - D is nondecreasing in k, so [S(k) >= D(k)] is 0...01...1. Padded with S = S(K-1),
    D = 0 up to m*B >= K+1 levels it always turns 1 by level K. Round 1 compares the last level
    of every block of B (and levels 0 and K-1) and yields the block of k* as a one-hot; the
    block's S and D (and the level before it) are selected by one dot product each; round 2
    compares within the block.

    Args:
        supply, demand: shares of S(k) and D(k), (rows, K) each.
        bits: a signed bit length bounding S - D.

    Returns:
        Shares, one a row each: (k*, S(k*-1), D(k*-1), S(k*), D(k*), [k* >= 1], [k* <= K-1]).
    """
    rows, k = supply.shape
    block = max(1, math.isqrt(k + 1))
    blocks = -(-(k + 1) // block)
    width = blocks * block
    s_pad = np.zeros((rows, width + 1), dtype=object)  # column 0: level -1
    d_pad = np.zeros((rows, width + 1), dtype=object)
    s_pad[:, 1:k + 1], s_pad[:, k + 1:] = supply, supply[:, k - 1:k]
    d_pad[:, 1:k + 1] = demand
    ends = np.arange(blocks) * block + block  # last level of each block, +1 for the pad column
    coarse = np.concatenate([s_pad[:, ends] - d_pad[:, ends], (supply - demand)[:, [0, k - 1]]], axis=1)
    g = (1 - await less_than_zero(coarse, bits)) % P
    g_blocks, exists_lo, exists_hi = g[:, :blocks], (1 - g[:, blocks]) % P, g[:, blocks + 1]
    h_block = np.concatenate([g_blocks[:, :1], g_blocks[:, 1:] - g_blocks[:, :-1]], axis=1)
    # levels b*B - 1 .. b*B + B - 1 of each block b (pad columns b*B .. b*B + B)
    window = np.arange(blocks)[:, None] * block + np.arange(block + 1)[None, :]
    picked = np.stack([(h_block[:, :, None] * s_pad[:, window]).sum(axis=1),
                       (h_block[:, :, None] * d_pad[:, window]).sum(axis=1)])
    s_blk, d_blk = await reshare_values(picked)  # (rows, B+1): the level before the block, then the block
    g_fine = (1 - await less_than_zero(s_blk[:, 1:] - d_blk[:, 1:], bits)) % P
    h_fine = np.concatenate([g_fine[:, :1], g_fine[:, 1:] - g_fine[:, :-1]], axis=1)
    s_lo, d_lo, s_hi, d_hi = await reshare_values(np.stack([
        (h_fine * s_blk[:, :-1]).sum(axis=1), (h_fine * d_blk[:, :-1]).sum(axis=1),
        (h_fine * s_blk[:, 1:]).sum(axis=1), (h_fine * d_blk[:, 1:]).sum(axis=1)]))
    k_star = ((h_block * (np.arange(blocks) * block)).sum(axis=1) + (h_fine * np.arange(block)).sum(axis=1)) % P
    return k_star, s_lo, d_lo, s_hi, d_hi, exists_lo, exists_hi


async def cross(supply: np.ndarray, demand: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's crossing: the level chosen by the reference's rule and the volume traded there.

    Args:
        supply, demand: shares of S(k) and D(k), (rows, K) each.
        bound: the largest total either curve can reach.

    Returns:
        Opened (levels, volumes) per row, object arrays of ints; level -1 where nothing trades.
    """
    slots, k = supply.shape
    bits = bits_needed(bound)
    k_star, s_lo, d_lo, s_hi, d_hi, exists_lo, exists_hi = await locate_crossing(supply, demand, bits)
    sgn = await sign_of(s_lo - d_hi, bits)
    tie_break = (1 - await less_than_zero((s_hi - d_hi) - (d_lo - s_lo), bits)) % P
    sq, = await reshare_values([sgn * sgn])
    greater = (sq + sgn) * ((P + 1) // 2) % P
    equal = (1 - sq) % P
    pick, = await reshare_values([equal * tie_break])
    pick, = await reshare_values([exists_hi * (greater + pick)])
    choose_lo, = await reshare_values([exists_lo * (1 - exists_hi + pick)])
    level = (k_star - choose_lo) % P
    volume, = await reshare_values([d_hi + choose_lo * (s_lo - d_hi)])
    volume = np.array([int(v) for v in await open_values(volume)], dtype=object)
    trading = volume > 0
    levels = np.full(slots, -1, dtype=object)
    if trading.any():
        levels[trading] = [int(v) for v in await open_values(level[trading])]
    return levels, volume


async def merit_ratios(supply: np.ndarray, demand: np.ndarray, levels: np.ndarray, volume: np.ndarray, bound: int,
                       f: int) -> np.ndarray:
    """Per row (a slot, or a zone's slot) shares of ceil(R * 2**f / Q) for each side: Q the energy
    at the chosen level, R = V - B what it shares (B: strictly better levels); 2**f on the short
    side, where R = Q. B, Q, R and which side is long stay secret.

    Args:
        supply, demand: shares of S(k) and D(k), (rows, K) each.
        levels, volume: the opened crossing per row (from cross).
        bound: the largest total either curve can reach.
        f: the ratios' fraction bits.

    Returns:
        Shares (2, rows): the sell side's ratio, then the buy side's (0 where nothing trades).
    """
    rows, k = supply.shape
    rho = np.zeros((2, rows), dtype=object)
    idx = np.flatnonzero(levels >= 0)
    if not idx.size:
        return rho
    lv = levels[idx].astype(np.int64)
    zero = np.zeros(idx.size, dtype=object)
    sell_better = np.where(lv > 0, supply[idx, np.maximum(lv - 1, 0)], zero)
    buy_better = np.where(lv < k - 1, demand[idx, np.minimum(lv + 1, k - 1)], zero)
    s_at, d_at = supply[idx, lv], demand[idx, lv]
    # Only the long side (S(k) > D(k): sells) divides: there R < Q; the short side has R = Q.
    bits = bits_needed(2 * bound)
    sgn = await sign_of((s_at - d_at) % P, bits)
    sq, = await reshare_values([sgn * sgn])
    long_sell, long_buy = (sq + sgn) * ((P + 1) // 2) % P, (sq - sgn) * ((P + 1) // 2) % P
    balanced = (1 - sq) % P
    remaining, at_level = await reshare_values(np.stack([
        long_sell * (volume[idx] - sell_better) + long_buy * (volume[idx] - buy_better),
        long_sell * (s_at - sell_better) + long_buy * (d_at - buy_better)]))
    ratio = await ceil_fraction(remaining, (at_level + balanced) % P, f, bits)  # balanced: 0 / 1
    rho[:, idx] = await reshare_values(np.stack([
        long_sell * ratio + (1 - long_sell) * (1 << f), long_buy * ratio + (1 - long_buy) * (1 << f)]))
    return rho
