"""Settlement results and bills, assembled the same way for the plain and the MPC engine."""

from dataclasses import dataclass, field

from . import settlement
from .engine import OrderRow, clear_mpc, clear_plain
from .errors import InputError


@dataclass
class SettlementRow(OrderRow):
    """An order row (or an empty one for a reading without order) plus its settlement."""

    net_wh: int
    deviation_wh: int
    deviation_amount: int
    total_amount: int


@dataclass
class Bill:
    participant: str
    trade_amount: int
    deviation_amount: int
    total_amount: int
    retailer_only_amount: int
    saving: int


@dataclass
class SettlementResult:
    clearing: object           # ClearingResult
    rows: list
    slots: dict                # slot -> SlotSettlement (the retailer's view)
    bills: list
    stats: dict = field(default_factory=dict)


def check_readings(book, readings, orders_path):
    """Every order needs a reading; returns {(participant, slot): net_wh} (0 where none)."""
    for o in book.orders:
        if (o.participant, o.slot) not in readings:
            raise InputError(orders_path, o.line, 'participant',
                             f'no meter reading for {o.participant} in slot {o.slot}')
    return {pair: net for pair, (net, _) in readings.items()}


def assemble(book, clearing, net_of, deviation_of, slot_settlements, stats=None):
    """Rows for every (participant, slot) with an order or a reading, and bills."""
    config = book.config
    trade = {(r.participant, r.slot): r for r in clearing.rows}
    pairs = sorted(set(trade) | set(net_of), key=lambda ps: (book.participant_index[ps[0]], ps[1]))
    rows, bills = [], {}
    for participant, slot in pairs:
        net = net_of.get((participant, slot), 0)
        deviation, deviation_amount = deviation_of(participant, slot)
        t = trade.get((participant, slot)) or OrderRow(participant, slot, '', 0, 0, 0, 0, 'no-order')
        row = SettlementRow(**vars(t), net_wh=net, deviation_wh=deviation, deviation_amount=deviation_amount,
                            total_amount=t.amount + deviation_amount)
        rows.append(row)
        bill = bills.setdefault(participant, [0, 0, 0])
        bill[0] += row.amount
        bill[1] += deviation_amount
        bill[2] += settlement.retailer_only_amount(config, net)
    bill_rows = [Bill(p, a, d, a + d, r, r - (a + d)) for p, (a, d, r) in bills.items()]
    return SettlementResult(clearing, rows, slot_settlements, bill_rows, stats or {})


def settle_plain(book, net_of):
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
        for p, d, a in zip(members, ds, amounts):
            deviations[(p, slot)] = (d, a)
    return assemble(book, clearing, net_of, lambda p, s: deviations.get((p, s), (0, 0)), outcomes,
                    {'engine': 'plain'})


def settle_mpc(book, net_of, **kwargs):
    """Clear and settle in one MPC session; every owner reconstructs its own rows."""
    clearing = clear_mpc(book, net_of=net_of, **kwargs)
    values, retailer = clearing.settlement['values'], clearing.settlement['retailer']
    pi, si = book.participant_index, book.slot_index
    outcomes = {slot: settlement.SlotSettlement(int(retailer[si[slot], 0]), int(retailer[si[slot], 1]),
                                                int(retailer[si[slot], 2])) for slot in book.slots}
    stats = dict(clearing.stats, meter_excluded=clearing.settlement['excluded'])
    return assemble(book, clearing, net_of,
                    lambda p, s: (int(values[pi[p], si[s], 0]), int(values[pi[p], si[s], 1])), outcomes, stats)
