"""Benchmark-only: the pro-rata allocation rule the merit order replaced, for a same-run ratio.

Never installed, never imported by mpc_market. benchmarks/rules.py puts this directory first on
PYTHONPATH and sets MPC_MARKET_BENCH_RULE=pro-rata for the node processes it starts; Python then
imports this module at start-up, and it swaps MarketNode.clear_double_auction for the old step 4
(every eligible order of the long side gets floor(E*V/T); the crossing is the current one, so the
ratio measures the allocation rule alone). prorata_clear_slot is its plaintext reference.
"""

import importlib.machinery
import os
import sys

TARGET = 'mpc_market.mpc.clearing'


def prorata_clear_slot(entries, levels):
    """(level, volume, residual, matched) of the old rule; entries (side, level, energy)."""
    from mpc_market.market.rule import choose_level, curves
    supply, demand = curves(entries, levels)
    level, volume = choose_level(supply, demand)
    if level is None:
     return None, 0, 0, [0] * len(entries)
    totals = {'sell': supply[level], 'buy': demand[level]}
    matched = [(energy if (lv <= level if side == 'sell' else lv >= level) else 0) * volume // totals[side]
            for side, lv, energy in entries]
    long_side = 'sell' if totals['sell'] > totals['buy'] else 'buy'
    residual = volume - sum(m for m, e in zip(matched, entries, strict=True) if e[0] == long_side) \
     if totals['sell'] != totals['buy'] else 0
    return level, volume, residual, matched


def _inject(module):
    np, ff, P = module.np, module.ff, module.P
    reshare_values, open_values = module.reshare_values, module.open_values
    floor_of_ratio_product, ceil_fraction = module.floor_of_ratio_product, module.ceil_fraction
    bits_needed, less_than_zero = module.bits_needed, module.less_than_zero
    from mpc_market.mpc.primitives import is_zero
    side_energies = module.side_energies

    async def ratio(self, volume, totals, bound, f):
        """Shares of ceil(V * 2**f / T) for public 0 < V <= T (one per element), by long division."""
        volume = np.asarray(volume, dtype=object)
        bits = bits_needed(2 * bound)
        equal = await is_zero(totals - volume, bits)
        fraction = await ceil_fraction(volume * (1 - equal) % P, totals, f, bits)  # V < T, or 0 if V = T
        return (fraction + (equal << f)) % P

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
            x_sell = ff.to_ints(np.take_along_axis(sell_prefix, np.broadcast_to(pick, (4, n, self.n_slots, 1)),
                                                   -1)[..., 0])
            x_buy = ff.to_ints(np.take_along_axis(buy_suffix, np.broadcast_to(pick, (4, n, self.n_slots, 1)),
                                                  -1)[..., 0])
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


    async def clear_double_auction(self, valid, lap):
     spec = self.spec
     bound = max(1, int(valid.sum())) * spec.max_order_wh
     f, y_bits = self.floor_bits(bound)
     supply, demand = self.curves(valid)
     levels, volume = await self.cross(supply, demand, bound)
     self.levels = levels
     self.deviation_price2 = [self.deviation_price2_of([(volume[s], levels[s])]) for s in range(self.n_slots)]
     lap('clearing')
     trading = levels >= 0
     chosen = np.where(trading, levels, 0).astype(np.int64)
     sell_total = supply[np.arange(self.n_slots), chosen]
     buy_total = demand[np.arange(self.n_slots), chosen]
     rho_sell = np.zeros(self.n_slots, dtype=object)
     rho_buy = np.zeros(self.n_slots, dtype=object)
     idx = np.flatnonzero(trading)
     if idx.size:
         both = await ratio(self, np.concatenate([volume[idx], volume[idx]]),
                            np.concatenate([sell_total[idx], buy_total[idx]]), bound, f)
         rho_sell[idx], rho_buy[idx] = both[:idx.size], both[idx.size:]
     prices = [spec.floor_units + j * spec.tick_units for j in range(spec.levels)]
     results, sums = await allocate(self, valid, levels, volume, rho_sell, rho_buy, f, y_bits, prices, bound)
     lap('allocation')
     residual = await residuals(self, sell_total, buy_total, volume, sums, bound, trading)
     lap('output')
     return {'slots': [{'slot': s, 'level': int(lv), 'traded_wh': int(v), 'residual_wh': int(r)}
                       for s, lv, v, r in zip(spec.slots, levels, volume, residual, strict=True)]}, results

    module.MarketNode.clear_double_auction = clear_double_auction


class _WrapOnImport:
    """Meta path finder: load TARGET as usual, then swap in the pro-rata rule."""

    @staticmethod
    def find_spec(name, path=None, target=None):
     if name != TARGET:
         return None
     spec = importlib.machinery.PathFinder.find_spec(name, path)
     exec_module = spec.loader.exec_module

     def exec_and_inject(module):
         exec_module(module)
         _inject(module)
     spec.loader.exec_module = exec_and_inject
     return spec


if os.environ.get('MPC_MARKET_BENCH_RULE') == 'pro-rata':
    sys.meta_path.insert(0, _WrapOnImport)
