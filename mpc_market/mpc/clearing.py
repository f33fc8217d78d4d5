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
import os
import time

import numpy as np
from mpyc.runtime import mpc

from ..market.book import Layout
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
    is_zero,
    less_than_zero,
    open_values,
    peak_rss_mb,
    reshare_values,
    sign_of,
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
        for pid, (committed, contribution) in enumerate(zip(commitments, contributions)):
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
    def weighted_totals(self, valid):
        """Shares of the weighted vectors summed over valid participants: (slots, 2K+2)."""
        totals = np.zeros((self.n_slots, self.layout.weighted.stop - self.layout.weighted.start), dtype=object)
        for start in range(0, self.n_participants, self.spec.chunk):
            stop = min(start + self.spec.chunk, self.n_participants)
            rows = np.flatnonzero(valid[start:stop])
            if rows.size:
                block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)[:, rows][..., self.layout.weighted]
                totals += ff.sum_rows(block, axis=0)
        return totals % P

    def curves(self, valid):
        """Shares of S(k) and D(k) per slot over valid participants: (slots, K) each."""
        k = self.layout.levels
        totals = self.weighted_totals(valid)  # the 'out of band' columns stay out of the curves
        sell, buy = totals[:, :k], totals[:, k:2 * k]
        supply = np.cumsum(sell, axis=1) % P
        demand = np.cumsum(buy[:, ::-1], axis=1)[:, ::-1] % P
        return supply, demand

    async def cross(self, supply, demand, bound):
        """Open chosen level and traded volume per slot (level -1 where nothing trades)."""
        slots, k = supply.shape
        bits = bits_needed(bound)
        below = await less_than_zero(supply - demand, bits)  # [S(k) < D(k)]
        g = (1 - below) % P
        h = np.zeros((slots, k + 1), dtype=object)  # one-hot at k* over 0..K
        h[:, 0] = g[:, 0]
        h[:, 1:k] = g[:, 1:] - g[:, :-1]
        h[:, k] = 1 - g[:, k - 1]
        prods = np.stack([(h[:, 1:] * supply).sum(axis=1), (h[:, 1:] * demand).sum(axis=1),
                          (h[:, :k] * supply).sum(axis=1), (h[:, :k] * demand).sum(axis=1)])
        s_lo, d_lo, s_hi, d_hi = await reshare_values(prods)
        exists_lo, exists_hi = (1 - g[:, 0]) % P, g[:, k - 1]
        sgn = await sign_of(s_lo - d_hi, bits)
        tie_break = (1 - await less_than_zero((s_hi - d_hi) - (d_lo - s_lo), bits)) % P
        sq, = await reshare_values([sgn * sgn])
        greater = (sq + sgn) * ((P + 1) // 2) % P
        equal = (1 - sq) % P
        pick, = await reshare_values([equal * tie_break])
        pick, = await reshare_values([exists_hi * (greater + pick)])
        choose_lo, = await reshare_values([exists_lo * (1 - exists_hi + pick)])
        k_star = (k - g.sum(axis=1)) % P
        level = (k_star - choose_lo) % P
        volume, = await reshare_values([d_hi + choose_lo * (s_lo - d_hi)])
        volume = np.array([int(v) for v in await open_values(volume)], dtype=object)
        trading = volume > 0
        levels = np.full(slots, -1, dtype=object)
        if trading.any():
            levels[trading] = [int(v) for v in await open_values(level[trading])]
        return levels, volume

    async def ratio(self, volume, totals, bound, f):
        """Shares of ceil(V * 2**f / T) for public 0 < V <= T (one per element), by long division."""
        volume = np.asarray(volume, dtype=object)
        bits = bits_needed(2 * bound)
        equal = await is_zero(totals - volume, bits)
        fraction = await ceil_fraction(volume * (1 - equal) % P, totals, f, bits)  # V < T, or 0 if V = T
        return (fraction + (equal << f)) % P

    # -- allocation --------------------------------------------------------------------------
    async def allocate(self, valid, levels, volume, rho_sell, rho_buy, f, y_bits, prices, bound):
        """Result shares (4, participants, slots, 3) and per-slot sums of sell/buy allocations."""
        layout, k = self.layout, self.layout.levels
        results = np.zeros((ff.LIMBS, self.n_participants, self.n_slots, 3), dtype=np.uint32)
        sums = np.zeros((2, self.n_slots), dtype=object)
        trading = levels >= 0
        chosen = np.where(trading, levels, 0).astype(np.int64)
        price = np.array([prices[int(lv)] if lv >= 0 else 0 for lv in levels], dtype=object)
        floor_u, ceil_u = self.spec.floor_units, self.spec.ceiling_units
        for start in range(0, self.n_participants, self.spec.chunk):
            stop = min(start + self.spec.chunk, self.n_participants)
            n = stop - start
            block = np.asarray(self.shares[:, start:stop], dtype=np.uint32)  # (4, n, S, W)
            weighted = block[..., layout.weighted].astype(np.uint64)
            sell_prefix = np.cumsum(weighted[..., :k], axis=-1)          # level <= k
            buy_suffix = np.cumsum(weighted[..., k:2 * k][..., ::-1], axis=-1)[..., ::-1]  # level >= k
            pick = chosen[None, None, :, None]
            x_sell = ff.to_ints(np.take_along_axis(sell_prefix, np.broadcast_to(pick, (4, n, self.n_slots, 1)), -1)[..., 0])
            x_buy = ff.to_ints(np.take_along_axis(buy_suffix, np.broadcast_to(pick, (4, n, self.n_slots, 1)), -1)[..., 0])
            out = layout.sell_out  # orders outside the band: all unmatched, at the retailer's prices
            e_sell, e_buy = (ff.to_ints(e) for e in side_energies(weighted, k))
            is_sell = ff.to_ints(block[..., :k].astype(np.uint64).sum(axis=-1) + block[..., out])
            keep = (valid[start:stop, None] & trading[None, :]).astype(object)
            keep_all = valid[start:stop, None].astype(object)
            x_sell, x_buy = x_sell * keep % P, x_buy * keep % P
            e_sell, e_buy, is_sell = e_sell * keep_all % P, e_buy * keep_all % P, is_sell * keep_all % P
            y = await reshare_values(x_sell * rho_sell[None, :] + x_buy * rho_buy[None, :])
            matched = (await floor_of_ratio_product(y.reshape(-1), f, y_bits, bound)).reshape(n, self.n_slots)
            m_sell = await reshare_values(matched * is_sell)
            m_buy = (matched - m_sell) % P
            unmatched = (e_sell + e_buy - matched) % P
            amount = (price * (m_buy - m_sell) + ceil_u * (e_buy - m_buy) - floor_u * (e_sell - m_sell)) % P
            sums[0] += m_sell.sum(axis=0)
            sums[1] += m_buy.sum(axis=0)
            fresh = await reshare_values(np.stack([matched, unmatched, amount], axis=-1))
            results[:, start:stop] = ff.from_ints(fresh)
            self.progress('allocation', stop, self.n_participants)
        return results, sums % P

    async def residuals(self, sell_total, buy_total, volume, sums, bound, trading):
        """Open V - (allocations of the long side) per trading slot."""
        residual = np.zeros(len(volume), dtype=object)
        if not trading.any():
            return residual
        idx = np.flatnonzero(trading)
        long_sell = await less_than_zero(buy_total[idx] - sell_total[idx], bits_needed(bound))
        long_sum = await reshare_values(sums[1, idx] + long_sell * (sums[0, idx] - sums[1, idx]))
        opened = await open_values((volume[idx] - long_sum) % P)
        residual[idx] = [int(v) for v in opened]
        return residual

    # -- community pricing schemes -------------------------------------------------------------
    def side_totals(self, valid):
        """Shares of each slot's total sell and buy energy, all orders (limits ignored)."""
        sells, buys = side_energies(self.weighted_totals(valid), self.layout.levels)
        return sells % P, buys % P

    async def run_scheme(self, valid, lap):
        from .schemes import scheme_prices
        spec, layout, k = self.spec, self.layout, self.layout.levels
        bound = max(1, int(valid.sum())) * spec.max_order_wh
        supply, demand = self.side_totals(valid)
        buy, sell = await scheme_prices(spec.mechanism, supply, demand, spec.floor_units, spec.ceiling_units, bound)
        buy, sell = (np.array([int(v) for v in x], dtype=object) for x in np.split(await open_values(np.concatenate([buy, sell])), 2))
        self.deviation_price2 = [int(b + s) for b, s in zip(buy, sell)]
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
                            for s, b, v in zip(spec.slots, buy, sell)]}
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
        self.valid = self.levels = None
        await self.agree_seed()
        lap('input')
        valid = self.valid = await self.validate(present)
        lap('validation')
        if spec.mechanism != 'double-auction':
            public, results = await self.run_scheme(valid, lap)
            public['excluded'] = [p for p, ok, here in zip(spec.participants, valid, present) if here and not ok]
            public['missing'] = [p for p, here in zip(spec.participants, present) if not here]
            return public, results
        bound = max(1, int(valid.sum())) * spec.max_order_wh
        supply, demand = self.curves(valid)
        levels, volume = await self.cross(supply, demand, bound)
        self.levels = levels
        self.deviation_price2 = [2 * (spec.floor_units + int(lv) * spec.tick_units) if lv >= 0
                                 else spec.floor_units + spec.ceiling_units for lv in levels]
        lap('clearing')
        trading = levels >= 0
        f = spec.energy_bits + bound.bit_length() + 1  # 2**f >= 2 * x * T for every x, T
        y_bits = spec.energy_bits + f + 1
        # masked openings need y + r < p with r about 2**(y_bits + SEC_PARAM + 6) (PRSS sums)
        if y_bits + SEC_PARAM + 8 > ff.MODULUS_BITS:
            raise ValueError(f'market too large for GF(2^127-1): {valid.sum()} participants with '
                             f'max_order_wh {spec.max_order_wh}')
        chosen = np.where(trading, levels, 0).astype(np.int64)
        sell_total = supply[np.arange(self.n_slots), chosen]
        buy_total = demand[np.arange(self.n_slots), chosen]
        rho_sell = np.zeros(self.n_slots, dtype=object)
        rho_buy = np.zeros(self.n_slots, dtype=object)
        idx = np.flatnonzero(trading)
        if idx.size:
            both = await self.ratio(np.concatenate([volume[idx], volume[idx]]),
                                    np.concatenate([sell_total[idx], buy_total[idx]]), bound, f)
            rho_sell[idx], rho_buy[idx] = both[:idx.size], both[idx.size:]
        prices = [spec.floor_units + j * spec.tick_units for j in range(spec.levels)]
        results, sums = await self.allocate(valid, levels, volume, rho_sell, rho_buy, f, y_bits, prices, bound)
        lap('allocation')
        residual = await self.residuals(sell_total, buy_total, volume, sums, bound, trading)
        lap('output')
        public = {
            'slots': [{'slot': s, 'level': int(lv), 'traded_wh': int(v), 'residual_wh': int(r)}
                      for s, lv, v, r in zip(spec.slots, levels, volume, residual)],
            'excluded': [p for p, ok, here in zip(spec.participants, valid, present) if here and not ok],
            'missing': [p for p, here in zip(spec.participants, present) if not here],
        }
        return public, results
