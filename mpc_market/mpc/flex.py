"""The flexibility market under MPC: offers secret-shared like orders, cleared per request in merit
order; equal exactly to the plaintext reference (mpc_market.market.flex.clear_flex_plain).

Client side (this module's functions): every offer owner encodes one order-layout vector per
request slot (an up offer at its level, a down offer at K + its level, 2K / 2K+1 above the
ceiling, 'no offer' elsewhere: mpc_market.market.book.Layout; K = FlexMarket.levels, the levels
up to the highest cap, since no offer above it can be activated), so the nodes validate offers exactly
as orders (one-hot, energy bits, max_order_wh: negative, oversize or two-direction vectors are
excluded, the rest clears). The job's public FlexPlan (requests, feeders) rides in JobSpec.flex.

Node side (FlexClearing, the registered mechanism 'flex'): per request a one-sided curve S(k) (the
valid offers of its feeder, or of everyone the DSO did not reach, at levels <= its cap) against its
public volume V: one comparison gives T = min(V, S(cap)), which is opened (the procured volume
before the floors); a binary search over 0..cap with opened comparisons gives the marginal level
(opened anyway, and each comparison follows from it) and S there and just below it (public
indices), from which a ratio just above R * 2**f / Q follows by a Newton reciprocal
(primitives.approx_ratio: no comparison; f sized by the largest curve, a DSO's feeder or everyone
for the aggregator, plus the ratio's slack). Per offer one floor
(floor_of_ratio_product) at the marginal level of the DSO's or the aggregator's request (an
offer is at most at one of them); which one and the price follow by multiplications with the
one-hot level. Only T, the levels and the floors' residuals are opened.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from ..common.errors import BadParameter
from ..market.book import Book, Layout
from ..market.flex import DIRECTIONS, FlexMarket
from .jobs import JobDir, JobSpec, config_spec, json_fields, write_json
from .mechanism import Clearing, Lap, Mechanism, OrderShares, register

# result shares per (participant, slot): the activations, the payment, and what the delivery
# settlement needs of them (mpc_market.mpc.flex_delivery): the activation per direction and the
# price and penalty price (units per Wh) of the request that reached the offer
FIELDS = ('dso_wh', 'aggregator_wh', 'payment', 'up_wh', 'down_wh', 'price', 'penalty')


@dataclass(frozen=True)
class PlannedRequest:
    """A request as the nodes see it: stage 0 (a DSO's, on feeder group) or 1 (the aggregator's),
    the slot's index in the job, direction 0 (up) or 1 (down), volume and cap level (-1: none)."""

    request: str
    stage: int
    group: int
    slot: int
    direction: int
    volume_wh: int
    cap_level: int
    penalty_units: int = 0   # penalty price per Wh not delivered, in price units


@dataclass(frozen=True)
class FlexPlan:
    """The public parameters of a flexibility job (JobSpec.flex): the pricing, the feeders and
    each participant's feeder group (index + 1; 0: none), and the requests."""

    pricing: str
    feeders: list[str]
    group: list[int]
    requests: list[PlannedRequest]
    min_cohort: int = 0   # allocation 'flex-curve': the least offering participants to open a curve

    def to_json(self) -> dict[str, Any]:
        """The JSON object of JobSpec.flex."""
        return {**json_fields(self), 'requests': [json_fields(r) for r in self.requests]}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> FlexPlan:
        """Parse JobSpec.flex.

        Raises:
            BadParameter: the job carries no flexibility plan.
        """
        if not obj:
            raise BadParameter('flex', 'a flexibility job without its plan (JobSpec.flex)')
        return cls(obj['pricing'], list(obj['feeders']), [int(g) for g in obj['group']],
                   [PlannedRequest(**r) for r in obj['requests']], int(obj.get('min_cohort', 0)))


class FlexBook(Book):
    """The offers as order-layout vectors: participants are the owners of an offer in a request
    slot, slots the request slots (public); shared with the orders' encoder (Book.encode)."""

    def __init__(self, market: FlexMarket, only: Sequence[int] | None = None):
        slots = set(market.request_slots if only is None else only)  # the curve's: the offers' slots
        offers = [o for o in market.offers if o.slot in slots]
        owners = sorted({o.participant for o in offers})
        pairs = [(p, min(slots)) for p in owners] + [(owners[0], s) for s in sorted(slots)] if owners else []
        super().__init__(market.config, [], extra_pairs=pairs, layout=Layout.for_config(market.config, market.levels))
        self.market = market
        self.offers = offers
        k = self.layout.levels
        for o in offers:
            level = market.offer_level(o)
            d = DIRECTIONS.index(o.direction)
            i, j = self.participant_index[o.participant], self.slot_index[o.slot]
            self.position_array[i, j] = self.layout.sell_out + d if level is None or level >= k else d * k + level
            self.energy_array[i, j] = o.volume_wh

    def plan(self) -> FlexPlan:
        """The job's public FlexPlan."""
        market = self.market
        feeders = sorted(set(market.feeder_of.values()) | {r.feeder for r in market.requests if r.buyer == 'dso'})
        index = {f: i + 1 for i, f in enumerate(feeders)}
        group = [index.get(market.feeder_of.get(p, ''), 0) for p in self.participants]
        requests = []
        for r in market.requests:
            cap = market.cap_level(r)
            requests.append(PlannedRequest(r.request, 0 if r.buyer == 'dso' else 1, index.get(r.feeder, 0),
                                           self.slot_index[r.slot], DIRECTIONS.index(r.direction), r.volume_wh,
                                           -1 if cap is None else cap, market.config.price_units(r.penalty_price)))
        return FlexPlan(market.pricing, feeders, group, requests)

    def spec(self, nodes: int, chunk: int, min_cohort: int | None = None) -> JobSpec:
        """The job's JobSpec: the market's grid, these participants and slots, the plan (with
        min_cohort: the aggregator's curve, mechanism 'flex-curve', instead of the clearing)."""
        spec = config_spec(self.config, self.slots, nodes, chunk)
        k = self.layout.levels   # the market's levels up to its highest cap: fewer to validate and allocate
        spec = replace(spec, levels=k, ceiling_units=spec.floor_units + (k - 1) * spec.tick_units)
        plan = self.plan() if min_cohort is None else FlexPlan('', [], [0] * len(self.participants), [], min_cohort)
        return replace(spec, participants=list(self.participants), mechanism='double-auction', zone_names=[],
                       zone_of={}, fee_levels=0, fee_units=0, allocation='flex' if min_cohort is None else 'flex-curve',
                       flex=plan.to_json())


# -- node side ---------------------------------------------------------------------------------

def capped_curves(totals: np.ndarray, rows: Sequence[PlannedRequest], levels: int) -> np.ndarray:
    """Each request's S(k): its direction's energy at levels <= min(k, cap), cumulated.

    Args:
        totals: shares (rows, 2K+2) of each request's available weighted totals.
        rows: the requests.
        levels: K.

    Returns:
        Shares (rows, K).
    """
    curves = np.zeros((len(rows), levels), dtype=object)
    for i, r in enumerate(rows):
        at = np.array(totals[i, r.direction * levels:(r.direction + 1) * levels], dtype=object)
        at[r.cap_level + 1:] = 0   # cap -1: no level at all
        curves[i] = np.cumsum(at)
    return curves


async def merit_levels(curves: np.ndarray, target: np.ndarray, caps: np.ndarray, bits: int) -> np.ndarray:
    """Each row's marginal level k* = min{k : S(k) >= T} for a public T > 0, by binary search over
    0..cap whose comparisons are opened: S is nondecreasing, so [S(m) < T] = [m < k*] follows from
    k*, which is opened anyway; about log2(cap + 1) comparisons per row instead of locate_crossing's
    2 * sqrt(K) and its dot products.

    Args:
        curves: shares (rows, K) of S(k), nondecreasing and constant from the cap on.
        target: public T per row, 0 < T <= S(cap).
        caps: public cap level per row (>= 0).
        bits: a signed bit length bounding S - T.

    Returns:
        The levels (int64, one a row).
    """
    from .primitives import P, less_than_zero, open_values
    lo, hi = np.zeros(len(target), dtype=np.int64), np.asarray(caps, dtype=np.int64).copy()
    rows = np.arange(len(target))
    while (active := np.flatnonzero(lo < hi)).size:   # one batched comparison round per halving
        mid = (lo[active] + hi[active]) // 2
        below = await open_values(await less_than_zero((curves[rows[active], mid] - target[active]) % P, bits))
        below = np.array([int(v) for v in below], dtype=bool)
        lo[active] = np.where(below, mid + 1, lo[active])
        hi[active] = np.where(below, hi[active], mid)
    return lo


async def procure(curves: np.ndarray, rows: Sequence[PlannedRequest], bound: int,
                  f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every request's merit order: T = min(V, S(cap)) (opened), the marginal level (opened where
    T > 0) and the shares of a ratio rho with R * 2**f / Q < rho < R * 2**f / Q + RATIO_SLACK
    there (2**f where everything up to the cap is procured).

    The ratio comes from primitives.approx_ratio (a Newton reciprocal, no comparison) instead of
    f rounds of long division: the job's f carries the slack's bits (allocation.floor_bits), so
    the floor of x times it is still floor(x * R / Q) (primitives.floor_of_ratio_product). Where
    T < V (publicly short) everything up to the cap is procured: R = Q, no test and no division.

    Args:
        curves: shares (rows, K) of S(k), nondecreasing, S(K-1) = S(cap).
        rows: the requests (volume and cap level public).
        bound: the largest total one of these curves can reach.
        f: the job's fraction bits.

    Returns:
        (levels (-1: nothing procured), T, ratio shares, whether the ratio is the public 2**f), one a
        row each; where it is, every floor at that level is exact without a truncation.
    """
    from .primitives import P, approx_ratio, bits_needed, less_than_zero, open_values, reshare_values
    n = len(rows)
    levels = np.full(n, -1, dtype=object)
    rho = np.zeros(n, dtype=object)
    whole = np.ones(n, dtype=bool)
    if not n:
        return levels, np.zeros(0, dtype=object), rho, whole
    bits = bits_needed(bound)
    volume = np.array([min(r.volume_wh, bound) for r in rows], dtype=object)  # S(cap) <= bound: same minimum
    s_cap = curves[:, -1]
    short = await less_than_zero((s_cap - volume) % P, bits)
    t, = await reshare_values([(volume + short * (s_cap - volume)) % P])
    target = np.array([int(v) for v in await open_values(t)], dtype=object)
    idx = np.flatnonzero(target > 0)
    if not idx.size:
        return levels, target, rho, whole
    at = await merit_levels(curves[idx], target[idx], np.array([rows[int(i)].cap_level for i in idx]), bits)
    levels[idx] = at.tolist()
    rho[idx] = 1 << f
    s_hi = curves[idx, at]
    s_lo = np.where(at > 0, curves[idx, np.maximum(at - 1, 0)], 0)
    split = np.flatnonzero(target[idx] == volume[idx])   # elsewhere T = S(cap) = S(k*): R = Q
    if split.size:
        remaining, at_level = (target[idx][split] - s_lo[split]) % P, (s_hi[split] - s_lo[split]) % P  # 0 < R <= Q
        rho[idx[split]] = await approx_ratio(remaining, at_level, f, bound)
        whole[idx[split]] = False
    return levels, target, rho, whole


@register
class FlexClearing(Mechanism):
    """The flexibility market (JobSpec.allocation 'flex'): the DSO's requests, then the aggregator's."""

    name = 'flex'

    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        from . import allocation as alloc
        from .primitives import RATIO_SLACK, P, open_values, reshare_values
        spec, k = node.spec, node.layout.levels
        plan = FlexPlan.from_json(spec.flex)
        groups = len(plan.feeders) + 1
        group = np.array(plan.group, dtype=np.int64)
        totals = node.weighted_totals(valid, group, groups)  # (groups, slots, 2K+2)
        dso, agg = ([r for r in plan.requests if r.stage == s] for s in (0, 1))
        # the largest curve: a DSO's holds its feeder group's valid offers, the aggregator's anyone's
        members = np.bincount(group[np.asarray(valid, dtype=bool)], minlength=groups)
        feeder = max(1, max((int(members[r.group]) for r in dso), default=1)) * spec.max_order_wh
        everyone = max(1, int(valid.sum())) * spec.max_order_wh
        bound = everyone if agg else feeder   # the floors' denominators: a marginal level's volume
        f, y_bits = alloc.floor_bits(spec, bound, RATIO_SLACK)
        width = totals.shape[-1]
        dso_curves = capped_curves(stacked([totals[r.group, r.slot] for r in dso], width), dso, k)
        lv1, t1, rho1, whole1 = await procure(dso_curves, dso, feeder, f)
        first = np.full((groups, node.n_slots, 2), -1, dtype=np.int64)   # the DSO's level per group
        first_rho = np.zeros((groups, node.n_slots, 2), dtype=object)
        first_whole = np.ones((groups, node.n_slots, 2), dtype=bool)
        for i, r in enumerate(dso):
            first[r.group, r.slot, r.direction], first_rho[r.group, r.slot, r.direction] = lv1[i], rho1[i]
            first_whole[r.group, r.slot, r.direction] = whole1[i]
        # the aggregator's curves: every group's offers above its DSO's level (all where it reached none)
        above = np.arange(width)[None, None, None, :] > (first[..., None] + np.arange(2)[None, None, :, None] * k)
        direction_cols = (np.arange(width) // k)[None, None, None, :] == np.arange(2)[None, None, :, None]
        masked = (totals[:, :, None, :] * (above & direction_cols)).sum(axis=0) % P  # (slots, 2, 2K+2)
        agg_curves = capped_curves(stacked([masked[r.slot, r.direction] for r in agg], width), agg, k)
        lv2, t2, rho2, whole2 = await procure(agg_curves, agg, everyone, f)
        second = np.full((node.n_slots, 2), -1, dtype=np.int64)
        second_rho = np.zeros((node.n_slots, 2), dtype=object)
        second_whole = np.ones((node.n_slots, 2), dtype=bool)
        for i, r in enumerate(agg):
            second[r.slot, r.direction], second_rho[r.slot, r.direction] = lv2[i], rho2[i]
            second_whole[r.slot, r.direction] = whole2[i]
        lap('clearing')
        penalty1 = np.zeros((groups, node.n_slots, 2), dtype=object)
        penalty2 = np.zeros((node.n_slots, 2), dtype=object)
        for r in dso:
            penalty1[r.group, r.slot, r.direction] = r.penalty_units
        for r in agg:
            penalty2[r.slot, r.direction] = r.penalty_units
        prices = Prices(spec.floor_units, spec.tick_units, plan.pricing == 'pay-as-bid', penalty1, penalty2)
        results = np.zeros((4, node.n_participants, node.n_slots, len(FIELDS)), dtype=np.uint32)
        sums1 = np.zeros((groups, node.n_slots, 2), dtype=object)
        sums2 = np.zeros((node.n_slots, 2), dtype=object)
        levels_both = Levels(first, first_rho, first_whole, second, second_rho, second_whole)
        for start in range(0, node.n_participants, spec.chunk):
            stop = min(start + spec.chunk, node.n_participants)
            chunk = await allocate_chunk(node, start, stop, valid[start:stop], group[start:stop],
                                         levels_both, prices, (f, y_bits, bound))
            results[:, start:stop] = ff_from_ints(chunk.values)
            g = group[start:stop]
            for d in (0, 1):
                np.add.at(sums1[:, :, d], g, chunk.stage1[..., d])
                sums2[:, d] += chunk.stage2[..., d].sum(axis=0)
            node.progress('allocation', stop, node.n_participants)
        lap('allocation')
        activated = np.array([sums1[r.group, r.slot, r.direction] for r in dso]
                             + [sums2[r.slot, r.direction] for r in agg], dtype=object)
        levels, targets = np.concatenate([lv1, lv2]), np.concatenate([t1, t2])
        residual = np.zeros(len(activated), dtype=object)
        idx = np.flatnonzero(levels >= 0)
        if idx.size:
            fresh, = await reshare_values([(targets[idx] - activated[idx]) % P])
            residual[idx] = [int(v) for v in await open_values(fresh)]
        lap('output')
        slots = [{'request': r.request, 'level': int(lv), 'target_wh': int(t), 'residual_wh': int(res)}
                 for r, lv, t, res in zip(dso + agg, levels, targets, residual, strict=True)]
        return Clearing(slots, results, [0] * node.n_slots)


def stacked(rows: list[np.ndarray], width: int) -> np.ndarray:
    """Rows of shares as one (len(rows), width) object array (also when there are none)."""
    out = np.zeros((len(rows), width), dtype=object)
    for i, row in enumerate(rows):
        out[i] = row
    return out


def ff_from_ints(values: np.ndarray) -> np.ndarray:
    """Limbs of values mod p (the result shares' format)."""
    from . import field as ff
    from .primitives import P
    return ff.from_ints(np.asarray(values, dtype=object) % P)


@dataclass(frozen=True)
class Prices:
    """The public price of a level (units) and whether full activations are paid their own level's."""

    floor_units: int
    tick_units: int
    pay_as_bid: bool
    penalty1: np.ndarray   # (groups, slots, 2): the DSO's penalty price per feeder group
    penalty2: np.ndarray   # (slots, 2): the aggregator's

    def of(self, levels: np.ndarray) -> np.ndarray:
        """floor + level * tick per level (0 at -1), as Python ints."""
        out = np.where(levels >= 0, self.floor_units + levels.astype(object) * self.tick_units, 0)
        return np.asarray(out, dtype=object)


@dataclass(frozen=True)
class Levels:
    """The opened merit-order levels of both stages and their ratios: the DSO's per feeder group
    (groups, slots, 2), the aggregator's per slot (slots, 2); -1 where nothing is procured. A ratio
    whose `whole` is set is the public 2**f (everything at that level procured: publicly short)."""

    first: np.ndarray
    first_rho: np.ndarray
    first_whole: np.ndarray
    second: np.ndarray
    second_rho: np.ndarray
    second_whole: np.ndarray


@dataclass(frozen=True)
class ChunkAllocation:
    """A chunk's result shares (n, slots, FIELDS) and its activations per stage and direction."""

    values: np.ndarray
    stage1: np.ndarray  # (n, slots, 2)
    stage2: np.ndarray  # (n, slots, 2)


async def allocate_chunk(node: OrderShares, start: int, stop: int, valid: np.ndarray, group: np.ndarray,
                         levels: Levels, prices: Prices,
                         floors: tuple[int, int, int]) -> ChunkAllocation:
    """Every offer's activation by the DSO and by the aggregator, and its payment, for one chunk.

    Per direction d, with L1 its feeder's DSO level and L2 the aggregator's: the energy below L1 is
    the DSO's in full, the energy strictly between L1 and L2 the aggregator's in full; at L1 (or
    at L2 > L1) the offer gets floor(x * ratio / 2**f), one floor per offer since it sits at one
    level; multiplying that floor by the one-hot at L1 (at L2) says whose it is and its price.

    Args:
        node: the offer shares.
        start, stop: the chunk's participants.
        valid: their verdicts.
        group: their feeder groups.
        levels: both stages' levels and ratios.
        prices: the level prices and the pricing.
        floors: (f, y_bits, bound) of allocation.floor_bits.

    Returns:
        The ChunkAllocation.
    """
    from . import allocation as alloc
    from .primitives import P, floor_of_ratio_product, reshare_values
    first, first_rho, second, second_rho = levels.first, levels.first_rho, levels.second, levels.second_rho
    f, y_bits, bound = floors
    layout, k = node.layout, node.layout.levels
    block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)
    (up_prefix, down_prefix), _, _, _ = alloc.chunk_terms(node, start, stop)
    weighted = block[..., layout.weighted].astype(np.uint64)
    keep = valid[:, None].astype(object)
    full = [np.zeros(block.shape[1:3], dtype=object) for _ in range(4)]  # DSO Wh, aggregator Wh, payment, y
    marginal1, marginal2, price1, price2 = [], [], [], []
    stage_full: list[list[np.ndarray]] = [[], []]
    rate, penalty = np.zeros(block.shape[1:3], dtype=object), np.zeros(block.shape[1:3], dtype=object)
    secret = np.zeros(block.shape[1:3], dtype=bool)   # a secret ratio reaches the offer's y below
    for d, prefix in enumerate((up_prefix, down_prefix)):
        l1 = first[group, :, d]                                    # (n, slots)
        l2 = np.broadcast_to(second[None, :, d], l1.shape)
        reach2 = l2 > l1                                           # the aggregator's level is above the DSO's
        below1 = alloc.range_sum(prefix, np.zeros_like(l1), l1) * keep
        between = alloc.range_sum(prefix, l1 + 1, l2) * keep
        at1 = alloc.range_sum(prefix, l1, l1 + 1) * keep * (l1 >= 0)
        at2 = alloc.range_sum(prefix, l2, l2 + 1) * keep * reach2
        onehot = block[..., d * k:(d + 1) * k]
        ind1 = pick(onehot, l1) * keep * (l1 >= 0)
        ind2 = pick(onehot, l2) * keep * reach2
        p1, p2 = prices.of(l1), prices.of(l2)
        reached1, reached2, bid = reach_terms(onehot, l1, np.where(reach2, l2, l1), prices)
        reached1, reached2 = reached1 * keep, reached2 * keep
        rate += bid * keep if prices.pay_as_bid else reached1 * p1 + reached2 * p2
        penalty += reached1 * prices.penalty1[group, :, d] + reached2 * prices.penalty2[None, :, d]
        if prices.pay_as_bid:   # floor * E + tick * sum(level * E) over the levels activated in full
            level_weighted = limb_prefix(weighted[..., d * k:(d + 1) * k] * np.arange(k, dtype=np.uint64))
            pay = (prices.floor_units * (below1 + between)
                   + prices.tick_units * (alloc.range_sum(level_weighted, np.zeros_like(l1), l1)
                                          + alloc.range_sum(level_weighted, l1 + 1, l2)) * keep)
        else:
            pay = below1 * p1 + between * p2
        full[0] += below1
        full[1] += between
        full[2] += pay
        full[3] += at1 * first_rho[group, :, d] + at2 * second_rho[None, :, d]
        secret |= ((l1 >= 0) & ~levels.first_whole[group, :, d]) | (reach2 & ~levels.second_whole[None, :, d])
        marginal1.append(ind1)
        marginal2.append(ind2)
        price1.append(p1)
        price2.append(p2)
        stage_full[0].append(below1)
        stage_full[1].append(between)
    y = await reshare_values(full[3] % P)
    # a truncation only where a secret ratio reaches the offer: at a public 2**f, y / 2**f is exact
    need = valid[:, None] & secret
    floored = y * pow(1 << f, -1, P) % P
    if need.any():
        floored[need] = await floor_of_ratio_product(y[need], f, y_bits, bound)
    # one resharing: the floor's part at each direction's DSO and aggregator level
    q = await reshare_values(np.stack([floored * m for m in marginal1 + marginal2]) % P)
    dso_wh = (full[0] + q[0] + q[1]) % P
    agg_wh = (full[1] + q[2] + q[3]) % P
    payment = (full[2] + q[0] * price1[0] + q[1] * price1[1] + q[2] * price2[0] + q[3] * price2[1]) % P
    stage1 = np.stack([stage_full[0][d] + q[d] for d in (0, 1)], axis=-1) % P
    stage2 = np.stack([stage_full[1][d] + q[2 + d] for d in (0, 1)], axis=-1) % P
    values = [dso_wh, agg_wh, payment, stage1[..., 0] + stage2[..., 0], stage1[..., 1] + stage2[..., 1],
              rate % P, penalty % P]
    return ChunkAllocation(np.stack(values, axis=-1) % P, stage1, stage2)


def reach_terms(onehot: np.ndarray, l1: np.ndarray, top: np.ndarray,
                prices: Prices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear in an offer's one-hot level (no interaction): whether it is at or below the DSO's
    level l1, whether it is above l1 and at or below top (the aggregator's level where that is
    above l1, else l1), and its own level's price where it is at or below top (pay-as-bid; 0
    otherwise). Prefix sums in limbs (allocation.range_sum): only the (n, slots) picks become ints.

    Args:
        onehot: limbs (4, n, slots, K) of one direction's one-hot columns.
        l1: the DSO's level per (n, slots), -1: none.
        top: the highest level that reached the offer per (n, slots), -1: none.
        prices: the grid's floor and tick, and the pricing.

    Returns:
        Shares (n, slots) of the two indicators and of the price (0 unless pay-as-bid).
    """
    from . import allocation as alloc
    columns = onehot.astype(np.uint64)
    zero = np.zeros(l1.shape, dtype=np.int64)
    prefix = limb_prefix(columns)
    below1, below_top = alloc.range_sum(prefix, zero, l1 + 1), alloc.range_sum(prefix, zero, top + 1)
    bid = np.zeros(l1.shape, dtype=object)
    if prices.pay_as_bid:
        levels = np.arange(columns.shape[-1], dtype=np.uint64)
        bid = (prices.floor_units * below_top
               + prices.tick_units * alloc.range_sum(limb_prefix(columns * levels), zero, top + 1))
    return below1, below_top - below1, bid


def limb_prefix(columns: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums along the last axis of uint64 limbs (4, ..., J) -> (4, ..., J + 1)."""
    pad = np.zeros(columns.shape[:-1] + (1,), dtype=np.uint64)
    return np.concatenate([pad, np.cumsum(columns, axis=-1)], axis=-1)


def pick(columns: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Shares of column at[i, s] of each row (0 where at < 0).

    Args:
        columns: limbs (4, n, slots, K).
        at: public column per (n, slots).

    Returns:
        Object array (n, slots) of ints.
    """
    from . import field as ff
    index = np.clip(at, 0, columns.shape[-1] - 1)
    taken = np.take_along_axis(columns, np.broadcast_to(index[None, ..., None], columns.shape[:-1] + (1,)), -1)
    return np.asarray(ff.to_ints(taken[..., 0]) * (at >= 0), dtype=object)


@register
class FlexCurveView(Mechanism):
    """The aggregator's view (JobSpec.allocation 'flex-curve'): per slot and direction the offers'
    weighted vectors summed (the volume at each level) and the offering participants counted (the
    one-hot columns of the direction, above-ceiling included); one comparison per slot and
    direction opens whether the count reaches min_cohort, and only those curves are opened."""

    name = 'flex-curve'

    async def clear(self, node: OrderShares, valid: np.ndarray, lap: Lap) -> Clearing:
        from . import field as ff
        from .primitives import P, bits_needed, less_than_zero, open_values
        spec, layout, k = node.spec, node.layout, node.layout.levels
        plan = FlexPlan.from_json(spec.flex)
        totals = node.weighted_totals(valid)[0]                               # (slots, 2K+2)
        counts = np.zeros((node.n_slots, layout.onehot.stop), dtype=object)   # offers per one-hot column
        for start in range(0, node.n_participants, spec.chunk):
            stop = min(start + spec.chunk, node.n_participants)
            rows = np.flatnonzero(valid[start:stop])
            if rows.size:
                block = np.asarray(node.shares[:, start:stop], dtype=np.uint32)[..., layout.onehot]
                counts += ff.sum_rows(block[:, rows], axis=0)
        offering = np.stack([counts[:, d * k:(d + 1) * k].sum(axis=1) + counts[:, layout.sell_out + d]
                             for d in (0, 1)], axis=-1)                       # (slots, 2)
        bits = bits_needed(max(node.n_participants, plan.min_cohort))
        few = await open_values(await less_than_zero((offering - plan.min_cohort) % P, bits))
        opened = np.array([int(v) == 0 for v in np.asarray(few).reshape(-1)]).reshape(node.n_slots, 2)
        lap('clearing')
        keys = [(j, d) for j in range(node.n_slots) for d in (0, 1) if opened[j, d]]
        rows = stacked([totals[j, d * k:(d + 1) * k] for j, d in keys], k)
        values = await open_values(rows % P) if keys else np.zeros((0, k), dtype=object)
        curve = {key: [int(v) for v in np.asarray(row).reshape(-1)] for key, row in zip(keys, values, strict=True)}
        lap('output')
        slots = [{'slot': j, 'direction': d, 'open': bool(opened[j, d]), 'at_level': curve.get((j, d), [])}
                 for j in range(node.n_slots) for d in (0, 1)]
        results = np.zeros((4, node.n_participants, node.n_slots, 1), dtype=np.uint32)  # nothing private
        return Clearing(slots, results, [0] * node.n_slots)


# -- delivery and settlement (a session after the clearing) ------------------------------------

@dataclass(frozen=True)
class DeliveryPlan:
    """The public parameters of a delivery session (JobDir.delivery_plan beside its job.json; the
    job is the energy market's, settle on): the clearing job's participants and slots (its result
    shares map onto this job's rows by them) and each slot's 2 x deviation price in units. Which
    slot has a reading is the meter packages' secret unread bit (market.book.ReadingLayout)."""

    flex_participants: list[str]
    flex_slots: list[int]
    price2: list[int]
    flex_round: str = ''     # a deployment's: the flexibility round and the SHA-256 of its signed public
    flex_sha256: str = ''    # results, so the nodes' agreement on the plan covers which clearing they deliver

    def to_json(self) -> dict[str, Any]:
        """The JSON object of delivery.json."""
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> DeliveryPlan:
        """Parse delivery.json."""
        return cls([str(p) for p in obj['flex_participants']], [int(s) for s in obj['flex_slots']],
                   [int(v) for v in obj['price2']], str(obj.get('flex_round', '')), str(obj.get('flex_sha256', '')))

    def save(self, job: JobDir) -> None:
        """Write the plan into a job directory."""
        write_json(job.delivery_plan, self.to_json())

    @classmethod
    def load(cls, job: JobDir) -> DeliveryPlan:
        """The plan of a job directory."""
        with open(job.delivery_plan) as f:
            return cls.from_json(json.load(f))

    @staticmethod
    def present(job: JobDir) -> bool:
        """Whether a job directory is a delivery session."""
        return os.path.exists(job.delivery_plan)


@dataclass(frozen=True)
class DeliveryShares:
    """What a delivery session computed: per (participant, slot) the shares of (delivered Wh,
    payment, penalty, shift = adjusted - planned position) and of (deviation, amount) against the
    adjusted position, limb-major (4, participants, slots, 4) and (4, participants, slots, 2); the
    retailer's (4, slots, 3); and the participants whose meter packages failed the checks (public)."""

    delivery: np.ndarray
    settlement: np.ndarray
    retailer: np.ndarray
    meter_excluded: list[str]


def flex_rows(spec: JobSpec, plan: DeliveryPlan, flex: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clearing's result shares on this job's rows: (up, down, price, penalty) per
    (participant, slot), zero outside the clearing job, and where a row lies inside it.

    Args:
        spec: the delivery job.
        plan: its DeliveryPlan.
        flex: share ints (clearing participants, clearing slots, FIELDS).

    Returns:
        (object array (participants, slots, 4), bool array (participants, slots)).
    """
    rows = np.zeros((len(spec.participants), len(spec.slots), 4), dtype=object)
    inside = np.zeros(rows.shape[:2], dtype=bool)
    where = {p: i for i, p in enumerate(spec.participants)}, {s: j for j, s in enumerate(spec.slots)}
    first = FIELDS.index('up_wh')
    for i, p in enumerate(plan.flex_participants):
        for j, s in enumerate(plan.flex_slots):
            row, col = where[0][p], where[1][s]
            rows[row, col] = flex[i, j, first:first + 4]
            inside[row, col] = True
    return rows, inside


async def settle_delivery(node: Any, readings: np.ndarray, flex: np.ndarray, inside: np.ndarray,
                          plan: DeliveryPlan, valid: np.ndarray | None = None) -> DeliveryShares:
    """Delivery against the planned positions and the energy imbalance against the adjusted ones.

    The meter packages are the settlement's (checked against the planned position B of the order
    shares: their witnesses give d = M - B, its sign and |d| without a comparison). With the
    activations a_up, a_down of the clearing, d' = M - A = d + a_up - a_down is the deviation
    from the adjusted position A. The undelivered part is min(d'+, a_up) for up and min(d'-,
    a_down) for down (delivered = activated - undelivered equals the reference's clamp of the
    activation's direction of B - M), i.e. min(|d'|, a_sel) with a_sel = a_up where d' >= 0 and
    a_down where d' < 0 (an offer has one direction). So a (participant, slot) of the clearing
    costs two comparisons: the sign of d' (which the imbalance needs anyway) and that minimum;
    one outside it (no activation possible) none, its witnesses' d being d'. The imbalance is then
    the energy market's deviation settlement on d' (mpc.settlement.SettlementNode.run).

    Args:
        node: the MarketNode of the energy job (order shares, joint seed agreed).
        readings: its meter packages (4, participants, slots, width).
        flex: shares (participants, slots, 4) of (up, down, price, penalty) (flex_rows).
        inside: where a row lies in the clearing job (public).
        plan: the DeliveryPlan.
        valid: per participant whether its orders count (a deployment's: the clearing's verdicts);
            None: validated here.

    Returns:
        The DeliveryShares.
    """
    from ..market.book import ReadingLayout
    from . import field as ff
    from .primitives import P, bits_needed, less_than_zero, reshare_values
    from .settlement import SettlementNode
    from .validation import validate_orders
    spec = node.spec
    valid_orders = await validate_orders(node, np.ones(node.n_participants, dtype=bool)) if valid is None else valid
    layout = ReadingLayout((spec.max_reading_wh + spec.max_order_wh).bit_length(),
                           spec.max_reading_wh.bit_length(), spec.max_reading_wh)
    verdicts, dev, long_side, sign = await SettlementNode(node, readings, layout, plan.price2).validate(valid_orders)
    deviation = (dev - 2 * long_side) % P                                   # d = M - B
    up, down, rate, penalty = (flex[..., f] for f in range(4))
    adjusted = (deviation + up - down) % P                                   # d' = M - A
    # |d| <= max_reading + max_order (checked packages, valid orders), one activation <= max_order
    bound = spec.max_reading_wh + 2 * spec.max_order_wh                     # |d'|, and |gap| below
    magnitude, new_long, new_sign = dev.copy(), long_side.copy(), sign.copy()
    undelivered = np.zeros(dev.shape, dtype=object)
    idx = np.nonzero(inside)
    if idx[0].size:
        d2, a_up, a_down = adjusted[idx], up[idx], down[idx]
        s2 = await less_than_zero(d2, bits_needed(bound))
        sd, pick_down = await reshare_values(np.stack([s2 * d2, s2 * (a_down - a_up)]) % P)
        abs2, a_sel = (d2 - 2 * sd) % P, (a_up + pick_down) % P
        gap = (abs2 - a_sel) % P
        lower = await less_than_zero(gap, bits_needed(bound))   # -max_order <= gap <= |d'|
        least, = await reshare_values([lower * gap % P])
        magnitude[idx], new_long[idx], new_sign[idx] = abs2, (-sd) % P, s2
        undelivered[idx] = (a_sel + least) % P
    # no (valid) reading: nothing delivered; the unread bit (a checked bit of the package) is secret
    unread = ff.to_ints(np.asarray(readings[..., layout.unread], dtype=np.uint32))
    metered = verdicts[:, None].astype(object) * (1 - unread) % P
    activated = (up + down) % P
    shortfall, = await reshare_values([metered * (undelivered - activated) % P])
    undelivered = (activated + shortfall) % P
    delivered = (activated - undelivered) % P
    payment, charge = await reshare_values(np.stack([delivered * rate, undelivered * penalty]) % P)
    wide = ReadingLayout(bound.bit_length(), layout.reading_bits, layout.max_reading_wh)  # |d'| > |d|: wider bounds
    energy = adjusted_settlement(node, readings, wide, plan.price2, (verdicts, magnitude, new_long, new_sign))
    settled, retailer, excluded = await energy.run(valid_orders)
    shift = (down - up) % P  # adjusted - planned position: the owner's net reading is deviation + planned + shift
    delivery = ff.from_ints(await reshare_values(np.stack([delivered, payment, charge, shift], axis=-1) % P))
    return DeliveryShares(delivery, settled, retailer, excluded)


def adjusted_settlement(node: Any, readings: np.ndarray, layout: Any, price2: Sequence[int],
                        given: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> Any:
    """The energy settlement of mpc.settlement.SettlementNode on given deviations: its validate
    returns the deviations from the adjusted positions (verdicts, |d'|, max(-d', 0), [d' < 0])
    instead of the packages' (which are against the planned positions).

    Args:
        node, readings, layout, price2: SettlementNode's.
        given: the verdicts and the shares of |d'|, max(-d', 0) and [d' < 0].

    Returns:
        The SettlementNode (imported here: mpc.settlement loads the MPC runtime).
    """
    from .primitives import P
    from .settlement import SettlementNode

    class Adjusted(SettlementNode):
        async def validate(self, valid_orders: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
            in_market = valid_orders[:, None].astype(object)  # an excluded order settles with the retailer
            verdicts, dev, long_side, sign = given
            return verdicts, dev * in_market % P, long_side * in_market % P, sign * in_market % P
    return Adjusted(node, readings, layout, price2)
