"""The flexibility market: public requests, private offers, and the plaintext reference of its
clearing and of the settlement of delivery (docs/flexibility.md states the rule; the MPC engine,
mpc_market.mpc.flex, must agree with it exactly).

Prices live on the energy market's tick grid (MarketConfig): an offer's price counts at the level
ceil((price - floor) / tick) (at least 0: never paid below its ask; above the ceiling it cannot be
activated), a request's cap at floor((cap - floor) / tick) (at most K-1: never paid above it; below
the floor it procures nothing). Prices may be negative exactly where the market's floor is.
Energy is in Wh and money in 10**-(decimals+3) currency (Wh x price units), exact integers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import cached_property
from typing import Any

from ..common.errors import InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import csv_records, parse_int, parse_participant_slot, read_text
from . import settlement
from .config import FLEX_PRICINGS, SIGNED_PRICE_RULE, MarketConfig, bounded_signed_price
from .orders import Order

DIRECTIONS = ('up', 'down')      # up: lower net import / raise export; down: the reverse
BUYERS = ('dso', 'aggregator')   # the DSO for one feeder, the aggregator for the whole community
PRICINGS = FLEX_PRICINGS
REQUEST_COLUMNS = ('request', 'buyer', 'feeder', 'slot', 'direction', 'volume_wh', 'price_cap')
OFFER_COLUMNS = ('participant', 'slot', 'direction', 'volume_wh', 'price')
FEEDER_COLUMNS = ('participant', 'feeder')
MAX_REQUEST_WH = 10 ** 12        # 1 TWh in one slot: far above any feeder, far below the field


@dataclass(frozen=True)
class FlexRequest:
    """A public request: the buyer wants volume_wh of flexibility in one direction in one slot."""

    request: str          # its id
    buyer: str            # 'dso' or 'aggregator'
    feeder: str           # the DSO's feeder ('' for the aggregator: the whole community)
    slot: int
    direction: str        # 'up' or 'down'
    volume_wh: int
    price_cap: Decimal    # currency per kWh
    penalty_price: Decimal  # currency per kWh of activated flexibility not delivered
    line: int = 0


@dataclass(frozen=True)
class FlexOffer:
    """A private offer: the participant can shift volume_wh in one direction in one slot at price."""

    participant: str
    slot: int
    direction: str
    volume_wh: int
    price: Decimal
    line: int = 0


@dataclass(frozen=True)
class FlexMarket:
    """One flexibility clearing's inputs: the requests, the offers, each participant's feeder
    (public: its grid connection) and the pricing rule."""

    config: MarketConfig
    requests: tuple[FlexRequest, ...]
    offers: tuple[FlexOffer, ...]
    feeder_of: Mapping[str, str] = field(default_factory=dict)
    pricing: str = 'pay-as-clear'

    def offer_level(self, offer: FlexOffer) -> int | None:
        """The offer's price level (rounded up), None above the ceiling (it cannot be activated)."""
        return self.config.sell_level(offer.price)

    def cap_level(self, request: FlexRequest) -> int | None:
        """The request's cap level (rounded down), None below the floor (it procures nothing)."""
        return self.config.buy_level(request.price_cap)

    def aggregator_request(self, slot: int, direction: str) -> FlexRequest | None:
        """The aggregator's request of a slot and direction, if any."""
        return self._by_key.get(('aggregator', '', slot, direction))

    def dso_request(self, feeder: str | None, slot: int, direction: str) -> FlexRequest | None:
        """The DSO's request for a feeder, slot and direction, if any."""
        return None if feeder is None else self._by_key.get(('dso', feeder, slot, direction))

    @cached_property
    def levels(self) -> int:
        """The price levels its offers are encoded on (the job's K): 0 up to the highest cap among
        the requests, since an offer above every cap can never be activated (it is encoded as above
        the ceiling, as the reference never activates it); all K without requests (the
        aggregator's curve shows every level)."""
        if not self.requests:
            return self.config.levels
        return max((c + 1 for r in self.requests if (c := self.cap_level(r)) is not None), default=1)

    @cached_property
    def _by_key(self) -> dict[tuple[str, str, int, str], FlexRequest]:
        return {(r.buyer, r.feeder, r.slot, r.direction): r for r in self.requests}

    @property
    def request_slots(self) -> list[int]:
        """The slots with a request, sorted."""
        return sorted({r.slot for r in self.requests})


@dataclass(frozen=True)
class RequestOutcome:
    """A request's public outcome: the marginal level and its price, the volume the merit order
    procured (the sum of the activations), what the floors left at the marginal level
    (residual_wh, part of the shortfall) and the shortfall (volume - procured)."""

    request: str
    slot: int
    level: int | None
    price_units: int | None
    volume_wh: int
    procured_wh: int
    residual_wh: int
    shortfall_wh: int


@dataclass(frozen=True)
class Activation:
    """An offer's private outcome, for its owner only: the request it served ('' if none), the
    activated energy, the price it is paid at (None if not activated) and the payment for it
    (money units, positive: the participant is paid)."""

    participant: str
    slot: int
    direction: str
    offered_wh: int
    request: str
    activated_wh: int
    price_units: int | None
    payment: int


@dataclass(frozen=True)
class FlexResult:
    """A flexibility clearing: every request's public outcome and every offer's activation."""

    requests: list[RequestOutcome]
    activations: list[Activation]
    excluded: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """How an activation was delivered (private to its owner): the baseline (planned net import,
    from the energy orders), the adjusted position (baseline - activated for up, + for down), the
    metered net (None: no reading), the delivered and undelivered Wh, the payment for what was
    delivered and the penalty for what was not (money units; net = payment - penalty)."""

    participant: str
    slot: int
    direction: str
    request: str
    activated_wh: int
    planned_wh: int
    adjusted_wh: int
    net_wh: int | None
    delivered_wh: int
    undelivered_wh: int
    payment: int
    penalty: int

    @property
    def flex_net(self) -> int:
        """What the participant earns net: the payment minus the penalty."""
        return self.payment - self.penalty


@dataclass(frozen=True)
class Imbalance:
    """A participant's energy deviation in a slot, against its adjusted position: deviation_wh =
    net - adjusted, settled by the energy market's rule (amount > 0: the participant pays)."""

    participant: str
    slot: int
    planned_wh: int
    adjusted_wh: int
    net_wh: int
    deviation_wh: int
    amount: int


@dataclass(frozen=True)
class FlexSettlement:
    """The settlement of a flexibility round: every activation's delivery, every energy member's
    imbalance against its adjusted position, and the retailer's view per slot."""

    deliveries: list[Delivery]
    imbalances: list[Imbalance]
    slots: dict[int, settlement.SlotSettlement]


# -- loaders -------------------------------------------------------------------------------------

def _choice(path: str, line: int, row: Mapping[str, str], column: str, allowed: Sequence[str]) -> str:
    value = row[column]
    if value not in allowed:
        raise InputError(path, line, column, f'must be {" or ".join(repr(a) for a in allowed)}, got {value[:40]!r}')
    return value


def _price(path: str, line: int, column: str, raw: str) -> Decimal:
    try:
        if len(raw) > 40:
            raise InvalidOperation
        price = bounded_signed_price(Decimal(raw))
    except InvalidOperation:
        raise InputError(path, line, column, f'{raw[:40]!r} is not a decimal number') from None
    if price is None:
        raise InputError(path, line, column, f'must be {SIGNED_PRICE_RULE}, got {raw[:40]!r}')
    return price


def _volume(path: str, line: int, raw: str, most: int) -> int:
    volume = parse_int(path, line, 'volume_wh', raw)
    if not 1 <= volume <= most:
        raise InputError(path, line, 'volume_wh', f'must be in 1..{most}, got {volume}')
    return volume


def _records(path: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = read_text(path)
    if not text.strip():
        raise InputError(path, 1, 'file', 'empty file')
    rows = list(csv_records(path, text, columns))
    if not rows:
        raise InputError(path, 2, 'file', 'no rows')
    return rows


def _parse_request(path: str, line: int, row: dict[str, str], config: MarketConfig) -> FlexRequest:
    request = row['request']
    if not is_name(request):
        raise InputError(path, line, 'request', f'{request[:80]!r} is not {NAME_RULE}')
    buyer = _choice(path, line, row, 'buyer', BUYERS)
    feeder = row['feeder']
    if buyer == 'dso' and not is_name(feeder):
        raise InputError(path, line, 'feeder', f'a DSO request names its feeder: {feeder[:80]!r} is not {NAME_RULE}')
    if buyer == 'aggregator' and feeder:
        raise InputError(path, line, 'feeder', "the aggregator's request is for the whole community: leave it empty")
    slot = parse_int(path, line, 'slot', row['slot'])
    if slot < 0:
        raise InputError(path, line, 'slot', f'must be >= 0, got {slot}')
    direction = _choice(path, line, row, 'direction', DIRECTIONS)
    volume = _volume(path, line, row['volume_wh'], MAX_REQUEST_WH)
    cap = _price(path, line, 'price_cap', row['price_cap'])
    raw_penalty = row.get('penalty_price') or ''
    cap_level = config.buy_level(cap)  # the default penalty: the cap as it counts on the grid, at least 0
    default = max(config.level_price(cap_level), Decimal(0)) if cap_level is not None else Decimal(0)
    penalty = _price(path, line, 'penalty_price', raw_penalty) if raw_penalty else default
    if penalty < 0 or (Fraction(penalty) * config.price_scale).denominator != 1:
        raise InputError(path, line, 'penalty_price', f'must be >= 0 with at most {config.decimals} decimals '
                                                      f'(the price unit), got {penalty}')
    return FlexRequest(request, buyer, feeder, slot, direction, volume, cap, penalty, line)


def load_requests(path: str, config: MarketConfig) -> list[FlexRequest]:
    """Parse and validate a requests CSV: request,buyer,feeder,slot,direction,volume_wh,price_cap
    [,penalty_price]; one request per (buyer, feeder, slot, direction), ids unique.

    Args:
        path: the file.
        config: the market (its price unit bounds the penalty's decimals).

    Returns:
        The requests in file order.

    Raises:
        InputError: naming the file, line and field of the first bad value.
    """
    requests: list[FlexRequest] = []
    ids: dict[str, int] = {}
    keys: dict[tuple[str, str, int, str], int] = {}
    for line, row in _records(path, REQUEST_COLUMNS):
        r = _parse_request(path, line, row, config)
        if r.request in ids:
            raise InputError(path, line, 'request', f'second request {r.request} (first on line {ids[r.request]})')
        key = (r.buyer, r.feeder, r.slot, r.direction)
        if key in keys:
            raise InputError(path, line, 'slot', f'second {r.buyer} request{" for " + r.feeder if r.feeder else ""} '
                                                 f'in slot {r.slot} {r.direction} (first on line {keys[key]})')
        ids[r.request], keys[key] = line, line
        requests.append(r)
    return requests


def load_offers(path: str, config: MarketConfig) -> list[FlexOffer]:
    """Parse and validate an offers CSV: participant,slot,direction,volume_wh,price; at most one
    offer per (participant, slot) (one direction), volume_wh in 1..max_order_wh.

    Args:
        path: the file.
        config: the market (max_order_wh).

    Returns:
        The offers in file order.

    Raises:
        InputError: naming the file, line and field of the first bad value.
    """
    offers: list[FlexOffer] = []
    seen: dict[tuple[str, int], int] = {}
    for line, row in _records(path, OFFER_COLUMNS):
        participant, slot = parse_participant_slot(path, line, row)
        direction = _choice(path, line, row, 'direction', DIRECTIONS)
        volume = _volume(path, line, row['volume_wh'], config.max_order_wh)
        price = _price(path, line, 'price', row['price'])
        if (participant, slot) in seen:
            raise InputError(path, line, 'participant', f'second offer of {participant} for slot {slot} '
                                                        f'(first on line {seen[(participant, slot)]})')
        seen[(participant, slot)] = line
        offers.append(FlexOffer(participant, slot, direction, volume, price, line))
    return offers


def load_feeders(path: str) -> dict[str, str]:
    """{participant: feeder} of a feeders CSV (participant,feeder), one feeder per participant.

    Raises:
        InputError: naming the file, line and field of the first bad value.
    """
    feeder_of: dict[str, str] = {}
    for line, row in _records(path, FEEDER_COLUMNS):
        participant, feeder = row['participant'], row['feeder']
        for column, value in (('participant', participant), ('feeder', feeder)):
            if not is_name(value):
                raise InputError(path, line, column, f'{value[:80]!r} is not {NAME_RULE}')
        if participant in feeder_of:
            raise InputError(path, line, 'participant', f'{participant} is already on feeder {feeder_of[participant]}')
        feeder_of[participant] = feeder
    return feeder_of


# -- the clearing rule ---------------------------------------------------------------------------

def clear_request(entries: Sequence[tuple[int | None, int]], volume: int,
                  cap_level: int | None) -> tuple[int | None, int, list[int]]:
    """Merit order of one request against its eligible offers.

    T = min(volume, S(cap)), S(k) the offered energy at levels <= k; the marginal level k is the
    lowest with S(k) >= T; offers below k are activated in full, those at k share R = T - S(k-1)
    of their total Q = S(k) - S(k-1), each floor(E * R / Q).

    Args:
        entries: (level or None, volume Wh) per offer (None: cannot be activated).
        volume: the requested Wh.
        cap_level: the request's cap level, None below the floor.

    Returns:
        (marginal level or None, T, activation per entry).
    """
    if cap_level is None:
        return None, 0, [0] * len(entries)
    at = [0] * (cap_level + 1)
    for level, energy in entries:
        if level is not None and level <= cap_level:
            at[level] += energy
    target = min(volume, sum(at))
    if target == 0:
        return None, 0, [0] * len(entries)
    below, marginal = 0, 0
    while below + at[marginal] < target:
        below += at[marginal]
        marginal += 1
    share, total = target - below, at[marginal]
    return marginal, target, [energy if level is not None and level < marginal
                              else energy * share // total if level == marginal else 0
                              for level, energy in entries]


def clear_flex_plain(market: FlexMarket) -> FlexResult:
    """The plaintext reference: the DSO's requests first (each on its feeder's offers), then the
    aggregator's (per slot and direction) on the offers no DSO request reached (an offer serves
    one request only: one at or below the DSO's marginal level belongs to the DSO).

    Args:
        market: the requests, offers, feeders and pricing.

    Returns:
        The FlexResult, requests and activations in file order.
    """
    started = time.perf_counter()
    levels = {(o.participant, o.slot): market.offer_level(o) for o in market.offers}
    served: dict[tuple[str, int], tuple[FlexRequest, int, int | None]] = {}  # offer -> (request, Wh, level)
    taken: set[tuple[str, int]] = set()
    outcomes: dict[str, tuple[int | None, int]] = {}
    by_key: dict[tuple[int, str], list[FlexOffer]] = {}
    for o in market.offers:
        by_key.setdefault((o.slot, o.direction), []).append(o)
    for stage in BUYERS:
        for r in (r for r in market.requests if r.buyer == stage):
            members = [o for o in by_key.get((r.slot, r.direction), []) if (o.participant, o.slot) not in taken
                       and (stage == 'aggregator' or market.feeder_of.get(o.participant) == r.feeder)]
            level, target, activated = clear_request([(levels[(o.participant, o.slot)], o.volume_wh) for o in members],
                                                     r.volume_wh, market.cap_level(r))
            outcomes[r.request] = (level, target)
            for o, wh in zip(members, activated, strict=True):
                key, own = (o.participant, o.slot), levels[(o.participant, o.slot)]
                if level is not None and own is not None and own <= level:
                    taken.add(key)  # reached by this request, even when its floor is 0
                    served[key] = (r, wh, level)
    activations = [activation(market, o, served.get((o.participant, o.slot)), levels[(o.participant, o.slot)])
                   for o in market.offers]
    return FlexResult(request_outcomes(market, outcomes, activations), activations, [],
                      {'engine': 'plain', 'total_s': time.perf_counter() - started})


def activation(market: FlexMarket, offer: FlexOffer, served: tuple[FlexRequest, int, int | None] | None,
               level: int | None) -> Activation:
    """An offer's Activation row from what it served: (request, activated Wh, marginal level).

    Args:
        market: the market (pricing, grid).
        offer: the offer.
        served: None, or the request that reached it, its activation and that request's level.
        level: the offer's own level.

    Returns:
        The row; request '' and price None when nothing was activated.
    """
    if served is None or served[1] == 0 or served[2] is None or level is None:
        return Activation(offer.participant, offer.slot, offer.direction, offer.volume_wh, '', 0, None, 0)
    request, wh, marginal = served
    price = market.config.level_price_units(level if market.pricing == 'pay-as-bid' else marginal)
    return Activation(offer.participant, offer.slot, offer.direction, offer.volume_wh, request.request, wh, price,
                      wh * price)


def request_outcomes(market: FlexMarket, opened: Mapping[str, tuple[int | None, int]],
                     activations: Iterable[Activation]) -> list[RequestOutcome]:
    """Every request's public outcome from its opened (level, T) and the activations it made.

    Args:
        market: the requests and grid.
        opened: {request id: (marginal level or None, T)}.
        activations: every offer's activation.

    Returns:
        RequestOutcome per request, in the market's order.
    """
    activated: dict[str, int] = {}
    for a in activations:
        activated[a.request] = activated.get(a.request, 0) + a.activated_wh
    rows = []
    for r in market.requests:
        level, target = opened[r.request]
        procured = activated.get(r.request, 0)
        rows.append(RequestOutcome(r.request, r.slot, level,
                                   None if level is None else market.config.level_price_units(level),
                                   r.volume_wh, procured, target - procured, r.volume_wh - procured))
    return rows


# -- delivery and settlement ---------------------------------------------------------------------

def delivered_wh(direction: str, planned: int, net: int | None, activated: int) -> int:
    """The delivered part of an activation: the activation's direction of (planned - net), capped
    at the activation, at least 0; nothing without a reading.

    Args:
        direction: 'up' (net import lowered) or 'down' (raised).
        planned: the baseline, the planned net import (Wh).
        net: the metered net import (Wh), None without a reading.
        activated: the activation (Wh).

    Returns:
        The delivered Wh, 0..activated.
    """
    if net is None:
        return 0
    change = planned - net if direction == 'up' else net - planned
    return max(0, min(change, activated))


def adjusted_position(direction: str, planned: int, activated: int) -> int:
    """The planned net import after an activation: planned - activated (up), + activated (down)."""
    return planned - activated if direction == 'up' else planned + activated


def settle_flex_plain(market: FlexMarket, result: FlexResult, orders: Sequence[Order],
                      readings: Mapping[tuple[str, int], int],
                      deviation_price2: Mapping[int, int]) -> FlexSettlement:
    """The reference settlement of a flexibility round against the meter readings.

    Every activation is paid for what was delivered at its price and charged its request's
    penalty price for the rest; every energy participant's deviation (the activated ones' against
    their adjusted position) is settled per slot by the energy market's rule
    (market.settlement.settle_slot; a missing reading counts as settlement's missing-reading rule).

    Args:
        market: the flexibility market.
        result: its clearing.
        orders: the energy orders (the planned positions).
        readings: {(participant, slot): metered net Wh}.
        deviation_price2: 2 x each slot's deviation price in units (the energy clearing's).

    Returns:
        The FlexSettlement (deliveries in activation order; imbalances by slot then participant).
    """
    config = market.config
    order_of = {(o.participant, o.slot): o for o in orders}
    penalty_of = {r.request: config.price_units(r.penalty_price) for r in market.requests}
    deliveries, shift = [], {}
    for a in result.activations:
        if not a.activated_wh:
            continue
        key = (a.participant, a.slot)
        planned = settlement.planned_position(order_of.get(key))
        net = readings.get(key)
        done = delivered_wh(a.direction, planned, net, a.activated_wh)
        shift[key] = adjusted_position(a.direction, planned, a.activated_wh) - planned
        deliveries.append(Delivery(a.participant, a.slot, a.direction, a.request, a.activated_wh, planned,
                                   planned + shift[key], net, done, a.activated_wh - done,
                                   done * (a.price_units or 0), (a.activated_wh - done) * penalty_of[a.request]))
    imbalances, slots = [], {}
    members = sorted(set(order_of) | set(readings) | set(shift), key=lambda k: (k[1], k[0]))
    for slot in sorted({s for _, s in members}):
        rows = []
        for p, _ in (m for m in members if m[1] == slot):
            order = order_of.get((p, slot))
            planned = settlement.planned_position(order)
            net = readings.get((p, slot), settlement.missing_reading_net(order))
            adjusted = planned + shift.get((p, slot), 0)
            rows.append((p, planned, adjusted, net))
        outcome, amounts = settlement.settle_slot([net - adjusted for _, _, adjusted, net in rows],
                                                  deviation_price2.get(slot, config.floor_units + config.ceiling_units),
                                                  config.floor_units, config.ceiling_units)
        slots[slot] = outcome
        imbalances += [Imbalance(p, slot, planned, adjusted, net, net - adjusted, amount)
                       for (p, planned, adjusted, net), amount in zip(rows, amounts, strict=True)]
    return FlexSettlement(deliveries, imbalances, slots)


@dataclass(frozen=True)
class FlexBill:
    """A participant's bill of an energy and flexibility round (money units; > 0: it pays): the
    energy trade, the deviation from its adjusted position, the flexibility revenue (payments for
    delivered flexibility) and penalty; total = trade + deviation - revenue + penalty."""

    participant: str
    trade_amount: int
    deviation_amount: int
    flex_revenue: int
    flex_penalty: int

    @property
    def total_amount(self) -> int:
        """What the participant pays in all (negative: it is paid)."""
        return self.trade_amount + self.deviation_amount - self.flex_revenue + self.flex_penalty


def flex_bills(trade: Mapping[str, int], settled: FlexSettlement) -> list[FlexBill]:
    """One bill per participant with a trade, an imbalance or a delivery, sorted by name.

    Args:
        trade: {participant: its energy trade amount} (the energy clearing's rows, summed).
        settled: the flexibility round's settlement.

    Returns:
        The FlexBills.
    """
    sums: dict[str, list[int]] = {p: [amount, 0, 0, 0] for p, amount in trade.items()}
    for i in settled.imbalances:
        sums.setdefault(i.participant, [0, 0, 0, 0])[1] += i.amount
    for d in settled.deliveries:
        bill = sums.setdefault(d.participant, [0, 0, 0, 0])
        bill[2] += d.payment
        bill[3] += d.penalty
    return [FlexBill(p, *sums[p]) for p in sorted(sums)]


# -- the aggregator's view -----------------------------------------------------------------------

@dataclass(frozen=True)
class CurveStep:
    """One step of the community's flexibility curve in a slot and direction: volume_wh is
    available at a price up to level's (the offers at levels <= level, summed)."""

    slot: int
    direction: str
    level: int
    price_units: int
    volume_wh: int


@dataclass(frozen=True)
class FlexCurve:
    """The aggregator's view: per (slot, direction) whether at least min_cohort participants offer
    (open) and, only where open, the curve's steps (levels where the cumulated volume grows)."""

    min_cohort: int
    opened: dict[tuple[int, str], bool]
    steps: list[CurveStep]


def curve_keys(offers: Iterable[FlexOffer]) -> list[tuple[int, str]]:
    """The (slot, direction) pairs the curve reports: every offer slot, both directions, sorted."""
    return [(s, d) for s in sorted({o.slot for o in offers}) for d in DIRECTIONS]


def curve_steps(config: MarketConfig, slot: int, direction: str, at_level: Sequence[int]) -> list[CurveStep]:
    """The steps of one curve from the volume offered at each level (0..K-1).

    Args:
        config: the market grid.
        slot: the slot.
        direction: 'up' or 'down'.
        at_level: Wh offered at each level.

    Returns:
        A CurveStep per level with a positive volume, cumulated from the cheapest.
    """
    steps, total = [], 0
    for level, energy in enumerate(at_level):
        if energy:
            total += energy
            steps.append(CurveStep(slot, direction, level, config.level_price_units(level), total))
    return steps


def flex_curve_plain(config: MarketConfig, offers: Sequence[FlexOffer], min_cohort: int) -> FlexCurve:
    """The reference of the aggregator's view: the community's curve per slot and direction,
    opened only where at least min_cohort participants offer in it (an offer above the ceiling
    counts as offering but adds no volume: it cannot be activated).

    Args:
        config: the market grid.
        offers: the offers (at most one per participant and slot).
        min_cohort: the least number of offering participants for a curve to be opened (>= 1).

    Returns:
        The FlexCurve.
    """
    opened, steps = {}, []
    for slot, direction in curve_keys(offers):
        members = [o for o in offers if o.slot == slot and o.direction == direction]
        opened[(slot, direction)] = len(members) >= min_cohort
        if not opened[(slot, direction)]:
            continue
        at = [0] * config.levels
        for o in members:
            level = config.sell_level(o.price)
            if level is not None:
                at[level] += o.volume_wh
        steps += curve_steps(config, slot, direction, at)
    return FlexCurve(min_cohort, opened, steps)
