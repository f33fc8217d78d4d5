"""Deviation settlement inside the market nodes, after clearing, in the same MPC session.

Planned positions come from the order shares the nodes hold; meter packages only add the
reading and witnesses (sign and bits of the deviation, bits of import/export) that are checked
with multiplications. Short, Long, N and every amount stay secret. The division by the secret
Short (or Long) is exact: an integer quotient A by restoring division, the fraction by
rho = ceil(R * 2**f / D) per slot, then per participant |d|*A + floor(|d|*rho / 2**f) with one
exact truncation, which equals floor(|d| * X / D) for 2**f > max|d| * D. X is negative when the
deviation price or the floor is: the division runs on X + O*D >= 0 for a public offset O (from the
market's prices, division_offset) and A is its quotient minus O, so A and R are floor(X / D) and
X mod D in Python's sense and every amount the reference's floor, whatever the sign of X.
"""

from collections.abc import Sequence

import numpy as np

from ..market.book import ReadingLayout
from . import field as ff
from . import primitives, validation
from .allocation import side_energies
from .primitives import (
    P,
    bits_needed,
    ceil_fraction,
    integer_divide,
    is_zero,
    less_than_zero,
    reshare_values,
)
from .validation import CheckedShares


def division_offset(prices2: Sequence[int]) -> tuple[int, int]:
    """The public shift that makes the settlement's dividends non-negative, and the quotient's bits.

    Each side's value is a sum of 2 x prices weighted by energies that total its divisor 2*Short (or
    2*Long): value / divisor lies between min(prices2) / 2 and max(prices2) / 2 (and is 0 when the
    side is empty). With offset O = ceil(-min(0, prices2) / 2), value + O * divisor is >= 0 and its
    quotient below 2**bits.

    Args:
        prices2: every 2 x price a value may be made of (2 x ceiling, 2 x floor, each slot's price2).

    Returns:
        (O, bits) with 0 <= value / divisor + O < 2**bits; O = 0 when no price is negative.
    """
    offset = -(min(0, *prices2) // 2)
    return offset, (max(0, *prices2) + 2 * offset).bit_length()


class SettlementNode:
    """Settlement view of one node: its order shares (via the MarketNode) and meter packages."""

    def __init__(self, node: CheckedShares, readings: np.ndarray, layout: ReadingLayout,
                 price2: Sequence[int]) -> None:
        self.node = node
        self.readings = readings  # limb-major uint32 (4, participants, slots, width)
        self.layout = layout      # ReadingLayout
        self.price2 = np.array(price2, dtype=object)  # 2 x deviation price per slot (public)

    def _sides(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Shares of the sold and the bought energy (whole orders), (rows, slots) each."""
        layout = self.node.layout
        block = np.asarray(self.node.shares[:, start:stop], dtype=np.uint32)[..., layout.weighted].astype(np.uint64)
        sells, buys = side_energies(block, layout.levels)
        return ff.to_ints(sells), ff.to_ints(buys)

    async def validate(self, valid_orders: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per participant verdict on its meter packages, and shares of |d|, u = s*|d| and s per row.

        A participant in the market whose package fails the checks (or is missing: all zeros)
        is settled by the missing-reading rule of market.settlement: net = bought energy, so
        d = sold energy >= 0 (|d| = sells, s = 0), linear in its order shares."""
        layout, node = self.layout, self.node
        n_p, n_s = node.n_participants, node.n_slots
        width = layout.width
        rho = node.coefficients('meter-rho', width + 3)
        theta = node.coefficients('meter-theta', width)
        lam = np.array(node.coefficients('meter-lambda', 2 * n_s), dtype=object).reshape(2, n_s)
        verdicts = np.zeros(n_p, dtype=bool)
        u_all = np.zeros((n_p, n_s), dtype=object)
        dev_all = np.zeros((n_p, n_s), dtype=object)
        sign_all = np.zeros((n_p, n_s), dtype=object)

        def binary(columns: slice) -> list[int]:  # weights 2**i on a bit field, 0 elsewhere
            w = [0] * width
            for i in range(columns.stop - columns.start):
                w[columns.start + i] = 1 << i
            return w
        # mix, the linear part of the bit checks, |d|, import, export, slack, sign: one BLAS pass
        coefficients = [theta, rho[3:], binary(layout.dev_bits), binary(layout.pos_bits), binary(layout.neg_bits),
                        binary(layout.slack), [1] + [0] * (width - 1)]
        for start in range(0, n_p, node.spec.chunk):
            stop = min(start + node.spec.chunk, n_p)
            n = stop - start
            block = np.asarray(self.readings[:, start:stop], dtype=np.uint32).reshape(ff.LIMBS, n * n_s, width)
            linear = ff.lincomb(block, coefficients).T
            mix, bit_linear, dev, pos, neg, slack, sign = (v.reshape(n, n_s) for v in linear)
            bits = ff.to_ints(block)  # (rows, W): every column is a bit; squares need ints
            squares = sum(rho[3 + j] * (bits[:, j] * bits[:, j]) for j in range(width)).reshape(n, n_s)
            sells, buys = self._sides(start, stop)
            planned = (buys - sells) % P
            sd = sign * dev
            check = rho[0] * (pos * neg) + rho[1] * ((dev - 2 * sd) - (pos - neg - planned)) + squares - bit_linear
            if layout.has_slack:
                check += rho[2] * (pos + neg + slack - layout.max_reading_wh)
            per_participant = (check * lam[0]).sum(axis=1) % P
            mixed = (mix * lam[1]).sum(axis=1) % P
            ok, u = await validation.verdicts(node, per_participant, mixed, also_reshare=sd % P)  # u = s*|d|, degree t
            verdicts[start:stop] = ok & valid_orders[start:stop]
            metered = ok[:, None].astype(object)
            u_all[start:stop] = u.reshape(n, n_s) * metered
            dev_all[start:stop] = dev * metered + sells * (1 - metered)
            sign_all[start:stop] = sign * metered
        in_market = valid_orders[:, None].astype(object)  # an excluded order settles with the retailer
        return verdicts, dev_all * in_market % P, u_all * in_market % P, sign_all * in_market % P

    async def run(self, valid_orders: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Result shares (4, participants, slots, 2): deviation and amount; retailer (4, slots, 3)."""
        node, layout = self.node, self.layout
        spec = node.spec
        valid, dev, u, sign = await self.validate(valid_orders)
        node.progress('settlement', node.n_participants, node.n_participants)
        short_side = (dev - u) % P       # max(d, 0)
        long_side = u                    # max(-d, 0)
        short = short_side.sum(axis=0) % P
        long_ = long_side.sum(axis=0) % P
        max_dev = (1 << layout.deviation_bits) - 1
        bound = max(1, int(np.count_nonzero(valid_orders))) * max_dev  # substituted readings count too
        bits = bits_needed(2 * bound)
        short_le_long = await less_than_zero(short - long_ - 1, bits)
        netted = (long_ + await reshare_values(short_le_long * (short - long_))) % P
        ceil2, floor2 = 2 * spec.ceiling_units, 2 * spec.floor_units
        value = np.concatenate([netted * self.price2 + (short - netted) * ceil2,
                                netted * self.price2 + (long_ - netted) * floor2]) % P   # 2 x money
        totals = np.concatenate([short, long_])
        empty = await is_zero(totals, bits)
        divisor = (2 * totals + empty) % P  # 2*Short (or 1 when nobody is short), same for Long
        offset, quotient_bits = division_offset([ceil2, floor2, *map(int, self.price2)])
        value_bits = bits_needed((2 * bound + 1) << quotient_bits << 1)
        # value / divisor lies in [-offset, 2**quotient_bits - offset): divide the shifted value, which
        # is >= 0 as integer_divide needs, then shift back; floor((v + O*D) / D) - O = floor(v / D)
        whole, remainder = await integer_divide((value + offset * divisor) % P, divisor, quotient_bits, value_bits)
        whole = (whole - offset) % P
        f = layout.deviation_bits + (2 * bound + 1).bit_length() + 1  # 2**f >= 2 * max|d| * D
        y_bits = layout.deviation_bits + f + 1
        fraction = await ceil_fraction(remainder, divisor, f, bits_needed(4 * bound + 2))
        n_s = node.n_slots
        whole_s, whole_l = whole[:n_s], whole[n_s:]
        frac_s, frac_l = fraction[:n_s], fraction[n_s:]
        results = np.zeros((ff.LIMBS, node.n_participants, n_s, 2), dtype=np.uint32)
        slot_net = np.zeros(n_s, dtype=object)
        for start in range(0, node.n_participants, spec.chunk):
            stop = min(start + spec.chunk, node.n_participants)
            n = stop - start
            ds, dl = short_side[start:stop], long_side[start:stop]
            both = await reshare_values(np.stack([ds * frac_s + dl * frac_l, ds * whole_s + dl * whole_l]))
            truncated = await primitives.floor_of_ratio_product(both[0].reshape(-1), f, y_bits, 2 * bound + 1)
            truncated = truncated.reshape(n, n_s)
            magnitude = (both[1] + truncated) % P
            signed_part = await reshare_values(sign[start:stop] * magnitude)
            amount = (magnitude - 2 * signed_part) % P
            slot_net += amount.sum(axis=0)
            deviation = (ds - dl) % P
            fresh = await reshare_values(np.stack([deviation, amount], axis=-1))
            results[:, start:stop] = ff.from_ints(fresh)
            node.progress('settlement', stop, node.n_participants)
        retailer = np.stack([(short - netted) * spec.ceiling_units, (long_ - netted) * spec.floor_units,
                             slot_net], axis=-1) % P
        retailer = ff.from_ints(await reshare_values(retailer))
        excluded = [p for p, ok, order_ok in zip(spec.participants, valid, valid_orders, strict=True)
                    if order_ok and not ok]
        return results, retailer, excluded
