"""The plaintext engine: the market rule applied in the clear, the reference for every secure result.
"""

import time
from dataclasses import replace

from . import rule as reference
from . import settlement
from .book import Book
from .orders import Order
from .results import (
    ClearingResult,
    SettlementResult,
    SlotRow,
    assemble,
    cleared_rows,
    scheme_rows,
    slot_row,
    zoned_slot_row,
)


def clear_plain_scheme(book: Book) -> ClearingResult:
    """Plaintext reference of the community pricing schemes (supply-demand ratio, ...)."""
    from .schemes import scheme_prices
    started = time.perf_counter()
    config = book.config
    supply = {s: 0 for s in book.slots}
    demand = {s: 0 for s in book.slots}
    for o in book.orders:
        (supply if o.side == 'sell' else demand)[o.slot] += o.energy_wh
    prices = {s: scheme_prices(config.mechanism, supply[s], demand[s], config.floor_units, config.ceiling_units)
              for s in book.slots}
    slots = [SlotRow(s, None, None, 0, 0, *prices[s]) for s in book.slots]
    return ClearingResult(slots, scheme_rows(book, prices.get), [],
                          {'engine': 'plain', 'total_s': time.perf_counter() - started})



def clear_plain(book: Book) -> ClearingResult:
    """The plaintext reference on the whole book."""
    if book.config.mechanism != 'double-auction':
        return clear_plain_scheme(book)
    started = time.perf_counter()
    config, k = book.config, book.config.levels
    by_slot: dict[int, list[tuple[Order, str, int]]] = {s: [] for s in book.slots}
    for o in book.orders:
        position = book.positions[(o.participant, o.slot)][0]
        if position is not None:
            side, level = ('sell', position) if position < k else ('buy', position - k)
            by_slot[o.slot].append((o, side, level))
    if config.zoned:
        from .feeders import feeder_positions_plain
        return replace(clear_plain_zoned(book, by_slot, started), feeders=feeder_positions_plain(book))
    slots, outcome = [], {}
    for s in book.slots:
        entries = by_slot[s]
        result, matched = reference.clear_slot([(side, lv, o.energy_wh) for o, side, lv in entries], k)
        slots.append(slot_row(config, s, result.level, result.traded_wh, result.residual_wh))
        price = slots[-1].price_units
        for (o, _side, _), m in zip(entries, matched, strict=True):
            outcome[(o.participant, o.slot)] = (m, o.energy_wh - m,
                                                reference.order_amount(config, o.side, o.energy_wh, m, price))
    rows = cleared_rows(book, lambda o: outcome[(o.participant, o.slot)], set())
    return ClearingResult(slots, rows, [], {'engine': 'plain', 'total_s': time.perf_counter() - started})



def clear_plain_zoned(book: Book, by_slot: dict[int, list[tuple[Order, str, int]]], started: float) -> ClearingResult:
    """Zones clear on their own, then their leftovers in one cross-zone auction (rule.clear_zoned_slot)."""
    config = book.config
    slots, outcome = [], {}
    for s in book.slots:
        entries = by_slot[s]
        local, cross, first, second = reference.clear_zoned_slot(
            [(side, lv, o.energy_wh, book.zone_of[o.participant]) for o, side, lv in entries],
            book.zones, config.levels, config.fee_levels)
        row = zoned_slot_row(config, s, book.zones, [(r.level, r.traded_wh, r.residual_wh) for r in local],
                             (cross.level, cross.traded_wh, cross.residual_wh))
        slots.append(row)
        zone_price = {z.zone: z.price_units for z in row.zones}
        for (o, _, _), m1, m2 in zip(entries, first, second, strict=True):
            amount = reference.order_amount(config, o.side, o.energy_wh, m1 + m2,
                                            zone_price[book.zone_of[o.participant]],
                                            m2, row.price_units)
            outcome[(o.participant, o.slot)] = (m1 + m2, o.energy_wh - m1 - m2, amount, m1, m2)
    rows = cleared_rows(book, lambda o: outcome[(o.participant, o.slot)], set())
    return ClearingResult(slots, rows, [], {'engine': 'plain', 'total_s': time.perf_counter() - started})



def settle_plain(book: Book, net_of: dict[tuple[str, int], int]) -> SettlementResult:
    """Plaintext reference: clear, then settle every slot's deviations."""
    clearing = clear_plain(book)
    config = book.config
    price2 = {s.slot: settlement.deviation_price2(config, s) for s in clearing.slots}
    deviations, outcomes = {}, {}
    for slot in book.slots:
        members = [p for p in book.participants if (p, slot) in book.order_of or (p, slot) in net_of]
        ds = [net_of.get((p, slot), 0) - settlement.planned_position(book.order_of.get((p, slot))) for p in members]
        outcome, amounts = settlement.settle_slot(ds, price2[slot], config.floor_units, config.ceiling_units)
        outcomes[slot] = outcome
        for p, d, a in zip(members, ds, amounts, strict=True):
            deviations[(p, slot)] = (d, a)
    return assemble(book, clearing, net_of, lambda p, s: deviations.get((p, s), (0, 0)), outcomes,
                    {'engine': 'plain'})
