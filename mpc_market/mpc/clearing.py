"""The secure clearing run by each market node, one MPyC party each.

Import only inside a node process: importing mpyc.runtime sets up the MPyC runtime from
sys.argv (see mpc_market.mpc.node).

Data stay as Shamir shares over GF(2^127 - 1) throughout. Bulk linear work happens on limb
arrays (mpc_market.mpc.field); MPyC secure arrays are used for the few non-linear steps:
one resharing and one zero test per participant for validation, K comparisons per slot for
the crossing, a long division per slot for the rationing ratio, and one floor per order for
the allocation (a cheap probabilistic truncation plus an exact one on bitlen(T)+4 bits). Only
verdicts, chosen levels, traded volumes and residuals are ever opened.

Every mpc.transfer here crosses only links that mpyc_internals.start authenticated (the peer's
certificate names the party it claims to be) and is decoded by mpc_market.mpc.wire, never pickle.
"""

import hashlib
import math
import os
import time

import numpy as np
from mpyc.runtime import mpc

from ..market.book import Layout
from ..market.settlement import largest_market_price2
from . import field as ff
from . import mpyc_internals as internals
from .primitives import (
    FIELD,
    SEC_PARAM,
    P,
    bits_needed,
    ceil_fraction,
    commitment,
    floor_of_ratio_product,
    less_than_zero,
    open_values,
    peak_rss_mb,
    reshare_values,
    sign_of,
    supply_demand,
    to_secure,
)


def side_energies(weighted, levels):
    """Sell and buy energy of weighted vectors (..., 2K+2): trading levels plus 'out of band'."""
    k = levels
    return (weighted[..., :k].sum(axis=-1) + weighted[..., 2 * k],
            weighted[..., k:2 * k].sum(axis=-1) + weighted[..., 2 * k + 1])



class MarketNode:
    """One market node's view of a clearing job: its share packages and public parameters."""

    def __init__(self, spec, shares, held, progress=None):
        self.spec = spec
        self.layout = Layout(spec.levels, spec.energy_bits, spec.max_order_wh)
        self.shares = shares  # limb-major uint32 (4, participants, slots, width)
        self.held = set(held)
        self.n_participants = len(spec.participants)
        self.n_slots = len(spec.slots)
        self.timings = {}
        self.peaks = {}  # peak memory (MB) at the end of each phase
        self.seed = None
        self.progress = progress or (lambda phase, done, total: None)

    # -- public randomness, drawn after all packages are in -------------------------------
    async def agree_seed(self):
        """Joint seed by commit-then-reveal: every node commits to its contribution before any is
        revealed, so no node can choose its own after seeing the others' (grinding the checks)."""
        mine = os.urandom(32)
        commitments = await mpc.transfer(commitment(mpc.pid, mine))
        contributions = await mpc.transfer(mine)
        for pid, (committed, contribution) in enumerate(zip(commitments, contributions, strict=True)):
            if not (isinstance(contribution, bytes) and len(contribution) == 32
                    and committed == commitment(pid, contribution)):
                raise RuntimeError(f'node {pid} revealed a seed contribution that does not match its commitment')
        self.seed = hashlib.sha256(b''.join(contributions)).digest()

    def coefficients(self, label, count):
        """count public pseudorandom field elements derived from the joint seed."""
        stream = hashlib.shake_256(self.seed + label.encode()).digest(24 * count)
        return [int.from_bytes(stream[24 * i:24 * i + 24], 'little') % P for i in range(count)]

    # -- set agreement -----------------------------------------------------------------------
    async def agree_participants(self):
        """Participants whose packages every node holds (others are left out of the market)."""
        held_sets = await mpc.transfer(sorted(self.held))
        common = set(held_sets[0]).intersection(*map(set, held_sets[1:]))
        return np.array([p in common for p in self.spec.participants], dtype=bool)

    # -- validation --------------------------------------------------------------------------
    def _chunk(self, start, stop):
        block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)
        return block.reshape(ff.LIMBS, (stop - start) * self.n_slots, self.layout.width)

    async def verdicts(self, checks, mixed, also_reshare=()):
        """Per participant: shares consistent and check == 0, opening nothing else.

        mixed: a random combination of each participant's shares, opened with a fresh PRSS mask at
        all nodes and checked to lie on one degree-t polynomial. checks: degree-2t values, zero iff
        valid: one resharing and one zero test each. also_reshare rides along in the resharing.
        """
        n = len(checks)
        mask = internals.np_randoms(mpc, FIELD, n)
        if mpc.options.no_prss:
            mask = await mask
        opened = await mpc.transfer([int(v) for v in (mixed + mask.value) % P])
        _, consistent = ff.recombine([np.array(o, dtype=object) for o in opened], self.spec.threshold)
        fresh = await reshare_values(np.concatenate([checks, np.asarray(also_reshare, dtype=object).reshape(-1)]))
        zero = np.asarray(await mpc.np_is_zero_public(to_secure(fresh[:n])), dtype=bool)
        return consistent & zero, fresh[n:]

    async def validate(self, present):
        """Valid-and-consistent verdict per participant (opened), multiplications only."""
        layout = self.layout
        onehot_w = layout.onehot.stop
        weighted_w = layout.weighted.stop - layout.weighted.start
        gamma = self.coefficients('gamma', 1)[0]
        powers = [pow(gamma, j, P) for j in range(onehot_w)]
        powers2 = [pow(gamma, 2 * j, P) for j in range(onehot_w)]
        rho = self.coefficients('rho', 4 + 2 * layout.energy_bits + 1)
        theta = self.coefficients('theta', 2 + 2 * layout.energy_bits)
        lam = np.array(self.coefficients('lambda', 2 * self.n_slots), dtype=object).reshape(2, self.n_slots)
        verdicts = np.zeros(self.n_participants, dtype=bool)
        for start in range(0, self.n_participants, self.spec.chunk):
            stop = min(start + self.spec.chunk, self.n_participants)
            n = stop - start
            block = self._chunk(start, stop)
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
            per_participant = (check.reshape(n, self.n_slots) * lam[0]).sum(axis=1) % P
            mixed = (mix.reshape(n, self.n_slots) * lam[1]).sum(axis=1) % P
            ok, _ = await self.verdicts(per_participant, mixed)
            verdicts[start:stop] = ok & present[start:stop]
            self.progress('validation', stop, self.n_participants)
        return verdicts

    # -- aggregate curves and crossing -------------------------------------------------------
    def weighted_totals(self, valid, group=None, groups=1):
        """Shares of the weighted vectors summed over valid participants per group (group: each
        participant's index, e.g. its zone; default one group): (groups, slots, 2K+2)."""
        width = self.layout.weighted.stop - self.layout.weighted.start
        totals = np.zeros((groups, self.n_slots, width), dtype=object)
        for start in range(0, self.n_participants, self.spec.chunk):
            stop = min(start + self.spec.chunk, self.n_participants)
            block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)[..., self.layout.weighted]
            for g in range(groups):
                members = valid[start:stop] if group is None else valid[start:stop] & (group[start:stop] == g)
                rows = np.flatnonzero(members)
                if rows.size:
                    totals[g] += ff.sum_rows(block[:, rows], axis=0)
        return totals % P

    def curves(self, valid):
        """Shares of S(k) and D(k) per slot over valid participants: (slots, K) each."""
        k = self.layout.levels
        totals = self.weighted_totals(valid)[0]  # the 'out of band' columns stay out of the curves
        return supply_demand(totals[:, :k], totals[:, k:2 * k])

    @staticmethod
    async def locate_crossing(supply, demand, bits):
        """Shares of k* (the first level with S(k) >= D(k); K if none), S and D at k* and k*-1, and
        [k* >= 1], [k* <= K-1], in two rounds of about 2*sqrt(K) comparisons per row instead of K.

        S - D is nondecreasing in k, so [S(k) >= D(k)] is 0...01...1. Padded with S = S(K-1),
        D = 0 up to m*B >= K+1 levels it always turns 1 by level K. Round 1 compares the last level
        of every block of B (and levels 0 and K-1) and yields the block of k* as a one-hot; the
        block's S and D (and the level before it) are selected by one dot product each; round 2
        compares within the block."""
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

    async def cross(self, supply, demand, bound):
        """Open chosen level and traded volume per slot (level -1 where nothing trades)."""
        slots, k = supply.shape
        bits = bits_needed(bound)
        k_star, s_lo, d_lo, s_hi, d_hi, exists_lo, exists_hi = await self.locate_crossing(supply, demand, bits)
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

    # -- merit-order allocation ----------------------------------------------------------------
    async def merit_ratios(self, supply, demand, levels, volume, bound, f):
        """Per row (a slot, or a zone's slot) shares of ceil(R * 2**f / Q) for each side: Q the energy
        at the chosen level, R = V - B what it shares (B: strictly better levels); 2**f on the short
        side, where R = Q. B, Q, R and which side is long stay secret."""
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

    def chunk_terms(self, start, stop):
        """Per order of a chunk: exclusive prefix sums of its sell and buy energies over the levels
        (limbs, (4, n, slots, K+1)), its sell and buy energies and its side indicator (ints)."""
        k = self.layout.levels
        block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)
        weighted = block[..., self.layout.weighted].astype(np.uint64)
        pad = np.zeros(weighted.shape[:-1] + (1,), dtype=np.uint64)
        prefix = [np.concatenate([pad, np.cumsum(weighted[..., cols], axis=-1)], axis=-1)
                  for cols in (slice(0, k), slice(k, 2 * k))]
        e_sell, e_buy = (ff.to_ints(e) for e in side_energies(weighted, k))
        is_sell = ff.to_ints(block[..., :k].astype(np.uint64).sum(axis=-1) + block[..., self.layout.sell_out])
        return prefix, e_sell, e_buy, is_sell

    @staticmethod
    def range_sum(prefix, lo, hi):
        """Shares of the energy at levels lo <= j < hi ((n, slots) public bounds; empty if hi <= lo)."""
        lo = np.clip(lo, 0, prefix.shape[-1] - 1)
        hi = np.clip(np.maximum(hi, lo), 0, prefix.shape[-1] - 1)

        def take(at):
            return np.take_along_axis(prefix, np.broadcast_to(at[None, ..., None], prefix.shape[:-1] + (1,)), -1)

        return ff.to_ints(take(hi)[..., 0] - take(lo)[..., 0])

    async def stage_one(self, valid, group, levels, rho, f, y_bits, bound, groups, price=None):
        """Merit order in every group (the whole market, or each zone) at its public level.

        Per order: the energy strictly better than its group's level is matched in full, the energy
        at the level gets floor(x * R/Q) (one product, one floor); all linear selections of the
        order's weighted vector by the public level. Returns per-order limb shares and, per group
        and slot, the sums of f_sell, f_buy and all matches. With price (one market: the slot
        prices) the shares are the final results (matched, unmatched, amount), their side split
        riding in the final resharing; else (zones) (m_sell, m_buy, f_sell, f_buy) for stage 2."""
        k, slots = self.layout.levels, self.n_slots
        out = np.zeros((ff.LIMBS, self.n_participants, slots, 3 if price is not None else 4), dtype=np.uint32)
        sums = np.zeros((3, groups, slots), dtype=object)
        for start in range(0, self.n_participants, self.spec.chunk):
            stop = min(start + self.spec.chunk, self.n_participants)
            g = np.maximum(group[start:stop], 0)
            lv = np.asarray(levels, dtype=np.int64)[g]  # (n, slots): each order's group level
            keep = (valid[start:stop, None] & (lv >= 0)).astype(object)
            (sell_prefix, buy_prefix), e_sell, e_buy, is_sell = self.chunk_terms(start, stop)
            better_sell = self.range_sum(sell_prefix, np.zeros_like(lv), lv) * keep
            better_buy = self.range_sum(buy_prefix, lv + 1, np.full_like(lv, k)) * keep
            at_sell = self.range_sum(sell_prefix, lv, lv + 1) * keep
            at_buy = self.range_sum(buy_prefix, lv, lv + 1) * keep
            y = await reshare_values(at_sell * rho[0][g] + at_buy * rho[1][g])
            need = keep.astype(bool)
            floored = np.zeros(y.shape, dtype=object)
            if need.any():
                floored[need] = await floor_of_ratio_product(y[need], f, y_bits, bound)
            np.add.at(sums[2], g, (better_sell + better_buy + floored) * valid[start:stop, None])
            if price is not None:   # f_sell = floored * is_sell has degree 2t: the resharing reduces it
                f_sell = floored * is_sell
                values = self.final_results(valid[start:stop], e_sell, e_buy,
                                            (better_sell + f_sell, better_buy + floored - f_sell), None, (price,))
            else:
                f_sell = await reshare_values(floored * is_sell)
                f_buy = (floored - f_sell) % P
                np.add.at(sums[0], g, f_sell * valid[start:stop, None])
                np.add.at(sums[1], g, f_buy * valid[start:stop, None])
                values = np.stack([(better_sell + f_sell) % P, (better_buy + f_buy) % P, f_sell, f_buy], axis=-1)
            out[:, start:stop] = ff.from_ints(await reshare_values(values) if price is not None else values)
            self.progress('allocation', stop, self.n_participants)
        return out, sums % P

    def final_results(self, valid, e_sell, e_buy, stage1, stage2, prices):
        """(matched, unmatched, amount[, local, cross]) per order of a chunk, before resharing."""
        keep = valid[:, None].astype(object)
        e_sell, e_buy = e_sell * keep % P, e_buy * keep % P
        floor_u, ceil_u = self.spec.floor_units, self.spec.ceiling_units
        m1_sell, m1_buy = stage1
        matched_sell, matched_buy = m1_sell, m1_buy
        amount = prices[0] * (m1_buy - m1_sell)
        fields = []
        if stage2 is not None:
            m2_sell, m2_buy = stage2
            matched_sell, matched_buy = (m1_sell + m2_sell) % P, (m1_buy + m2_buy) % P
            amount = amount + prices[1] * (m2_buy - m2_sell) + self.spec.fee_units * m2_buy
            fields = [m1_sell + m1_buy, m2_sell + m2_buy]
        matched = matched_sell + matched_buy
        amount = amount + ceil_u * (e_buy - matched_buy) - floor_u * (e_sell - matched_sell)
        return np.stack([matched, e_sell + e_buy - matched, amount, *fields], axis=-1) % P

    async def clear_double_auction(self, valid, lap):
        """Merit-order double auction: every slot at its crossing, matched and billed."""
        spec = self.spec
        bound = max(1, int(valid.sum())) * spec.max_order_wh
        f, y_bits = self.floor_bits(bound)
        supply, demand = self.curves(valid)
        levels, volume = await self.cross(supply, demand, bound)
        self.deviation_price2 = [self.deviation_price2_of([(volume[s], levels[s])]) for s in range(self.n_slots)]
        lap('clearing')
        rho = await self.merit_ratios(supply, demand, levels, volume, bound, f)
        group = np.zeros(self.n_participants, dtype=np.int64)
        results, sums = await self.stage_one(valid, group, levels[None, :], rho[:, None, :], f, y_bits, bound, 1,
                                             price=self.level_prices(levels)[None, :])
        lap('allocation')
        residual = await self.open_residuals(volume, sums[2, 0], levels)
        lap('output')
        public = {'slots': [{'slot': s, 'level': int(lv), 'traded_wh': int(v), 'residual_wh': int(r)}
                            for s, lv, v, r in zip(spec.slots, levels, volume, residual, strict=True)]}
        return public, results

    def floor_bits(self, bound):
        f = self.spec.energy_bits + bound.bit_length() + 1  # 2**f >= 2 * x * T for every x, T
        y_bits = self.spec.energy_bits + f + 1
        # masked openings need y + r < p with r about 2**(y_bits + SEC_PARAM + 6) (PRSS sums)
        if y_bits + SEC_PARAM + 8 > ff.MODULUS_BITS:
            raise ValueError(f'market too large for GF(2^127-1): bound {bound} Wh with max_order_wh '
                             f'{self.spec.max_order_wh}')
        return f, y_bits

    def level_prices(self, levels):
        spec = self.spec
        return np.array([spec.floor_units + int(lv) * spec.tick_units if lv >= 0 else 0 for lv in np.ravel(levels)],
                        dtype=object).reshape(np.shape(levels))

    def deviation_price2_of(self, markets):
        """2 x the deviation price of a slot's opened markets [(volume, level)] (the reference's rule)."""
        spec = self.spec
        return largest_market_price2([(int(v), int(lv)) for v, lv in markets], spec.floor_units, spec.tick_units,
                                     spec.ceiling_units)

    async def open_residuals(self, volume, matched_sums, levels):
        """Open 2V - (all matches) per trading row: the short side sums to V, the long side to V - residual."""
        residual = np.zeros(len(volume), dtype=object)
        idx = np.flatnonzero(levels >= 0)
        if idx.size:
            residual[idx] = [int(v) for v in await open_values((2 * volume[idx] - matched_sums[idx]) % P)]
        return residual

    def zone_index(self):
        """Each participant's zone index in spec.zone_names (-1: not in any zone)."""
        index = {z: i for i, z in enumerate(self.spec.zone_names)}
        return np.array([index.get(self.spec.zone_of.get(p), -1) for p in self.spec.participants], dtype=np.int64)

    # -- community pricing schemes -------------------------------------------------------------
    def side_totals(self, valid):
        """Shares of each slot's total sell and buy energy, all orders (limits ignored)."""
        sells, buys = side_energies(self.weighted_totals(valid)[0], self.layout.levels)
        return sells % P, buys % P

    async def run_scheme(self, valid, lap):
        from .schemes import scheme_prices
        spec, layout, k = self.spec, self.layout, self.layout.levels
        bound = max(1, int(valid.sum())) * spec.max_order_wh
        supply, demand = self.side_totals(valid)
        buy, sell = await scheme_prices(spec.mechanism, supply, demand, spec.floor_units, spec.ceiling_units, bound)
        opened = np.split(await open_values(np.concatenate([buy, sell])), 2)
        buy, sell = (np.array([int(v) for v in x], dtype=object) for x in opened)
        self.deviation_price2 = [int(b + s) for b, s in zip(buy, sell, strict=True)]
        lap('clearing')
        results = np.zeros((ff.LIMBS, self.n_participants, self.n_slots, 3), dtype=np.uint32)
        for start in range(0, self.n_participants, spec.chunk):
            stop = min(start + spec.chunk, self.n_participants)
            weighted = np.asarray(self.shares[:, start:stop], dtype=np.uint32)[..., layout.weighted].astype(np.uint64)
            keep = valid[start:stop, None].astype(object)
            e_sell, e_buy = (ff.to_ints(e) * keep for e in side_energies(weighted, k))
            amount = buy[None, :] * e_buy - sell[None, :] * e_sell
            fresh = await reshare_values(np.stack([e_sell + e_buy, np.zeros_like(amount), amount], axis=-1))
            results[:, start:stop] = ff.from_ints(fresh)
            self.progress('allocation', stop, self.n_participants)
        lap('allocation')
        public = {'slots': [{'slot': s, 'buy_price_units': int(b), 'sell_price_units': int(v)}
                            for s, b, v in zip(spec.slots, buy, sell, strict=True)]}
        return public, results

    # -- whole run ---------------------------------------------------------------------------
    async def run(self):
        spec = self.spec
        clock = time.perf_counter()

        def lap(name):
            nonlocal clock
            now = time.perf_counter()
            self.timings[name] = self.timings.get(name, 0.0) + now - clock
            clock = now
            self.peaks[name] = round(peak_rss_mb(), 1)

        present = await self.agree_participants()
        self.valid = None
        await self.agree_seed()
        lap('input')
        valid = self.valid = await self.validate(present)
        lap('validation')
        if spec.mechanism != 'double-auction':
            public, results = await self.run_scheme(valid, lap)
        elif spec.zone_names:
            from .zones import clear_zoned
            public, results = await clear_zoned(self, valid, lap)
        else:
            public, results = await self.clear_double_auction(valid, lap)
        public['excluded'] = [p for p, ok, here in zip(spec.participants, valid, present, strict=True)
                              if here and not ok]
        public['missing'] = [p for p, here in zip(spec.participants, present, strict=True) if not here]
        return public, results
