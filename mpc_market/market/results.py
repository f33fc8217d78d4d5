"""Result and bill types shared by every engine, and how they are assembled from per-order values.

The plaintext reference and the MPC engine both end here, so their outputs are comparable row for row.
"""

from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ..common.errors import BadParameter
from . import rule as reference
from . import settlement
from .config import MarketConfig


@dataclass
class OrderRow:
    participant: str
    slot: int
    side: str
    energy_wh: int
    matched_wh: int
    unmatched_wh: int
    amount: int  # 10**-(decimals+3) currency; > 0 pays, < 0 is paid
    status: str  # 'cleared', 'retailer' (cannot trade locally) or 'excluded' (invalid package)
    # zoned markets: the participant's zone and how much of matched_wh it traded in / across zones
    zone: str = field(default='', kw_only=True)
    local_wh: int = field(default=0, kw_only=True)
    cross_wh: int = field(default=0, kw_only=True)



@dataclass
class SlotRow:
    slot: int
    level: int | None
    price_units: int | None
    traded_wh: int
    residual_wh: int
    buy_price_units: int | None = None   # community schemes: the slot's buy and sell prices
    sell_price_units: int | None = None
    # zoned markets: level/price/traded/residual above are the cross-zone auction's; these are
    # each zone's own (ZoneRow) and the network fees the cross-zone buyers pay the network operator
    zones: list | None = None
    fee_amount: int = 0



@dataclass
class ZoneRow:
    zone: str
    level: int | None
    price_units: int | None
    traded_wh: int
    residual_wh: int



@dataclass
class ClearingResult:
    slots: list
    rows: list
    excluded: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    settlement: dict | None = None  # MPC settlement: deviation/amount values, retailer values
    market: MarketConfig | None = field(default=None, compare=False, repr=False)  # mpc_market.clear attaches it
    feeders: list = field(default_factory=list)  # market.feeders.FeederPosition: released per-zone positions

    def to_dataframe(self, table: str = 'orders', config: MarketConfig | None = None) -> Any:
        """A pandas DataFrame of the orders (default) or the slots, prices and amounts as exact Decimal
        currency and slot_start in UTC (see mpc_market.market.frames).

        Raises:
            BadParameter: no market is known (pass config=), an unknown table, or no pandas.
        """
        from .frames import clearing_frame
        return clearing_frame(self, _market(config or self.market), table)

    def price(self, slot: SlotRow, config: MarketConfig | None = None) -> Decimal | None:
        """A slot's clearing price as exact Decimal currency per kWh (None: no local trade).

        Raises:
            BadParameter: no market is known (pass config=).
        """
        from .frames import price
        return price(_market(config or self.market), slot.price_units)

    def amount(self, row: OrderRow, config: MarketConfig | None = None) -> Decimal:
        """An order's amount as exact Decimal currency (> 0 pays, < 0 is paid).

        Raises:
            BadParameter: no market is known (pass config=).
        """
        from .frames import amount
        return amount(_market(config or self.market), row.amount)



def retailer_row(config, order, status, zone=''):
    """An order settled wholly with the retailer (excluded, or unable to trade locally)."""
    amount = reference.order_amount(config, order.side, order.energy_wh, 0, None)
    return OrderRow(order.participant, order.slot, order.side, order.energy_wh, 0, order.energy_wh, amount, status,
                    zone=zone)



def cleared_rows(book, matched_of, excluded):
    """Order rows from a function order -> (matched, unmatched, amount[, local_wh, cross_wh])."""
    rows = []
    for o in book.orders:
        position = book.positions[(o.participant, o.slot)][0]
        zone = book.zone_of.get(o.participant, '')
        if o.participant in excluded or position is None:
            rows.append(retailer_row(book.config, o, 'excluded' if o.participant in excluded else 'retailer', zone))
        else:
            matched, unmatched, amount, *stages = matched_of(o)
            local, cross = stages or (0, 0)
            rows.append(OrderRow(o.participant, o.slot, o.side, o.energy_wh, matched, unmatched, amount, 'cleared',
                                 zone=zone, local_wh=local, cross_wh=cross))
    return rows



def slot_row(config, slot, level, traded, residual):
    if level is None or traded == 0:
        return SlotRow(slot, None, None, 0, 0)
    return SlotRow(slot, level, config.level_price_units(level), traded, residual)



def zoned_slot_row(config, slot, zones, local, cross):
    """SlotRow of a zoned market; local: (level, traded, residual) per zone, cross: the same of stage 2."""
    row = slot_row(config, slot, *cross)
    zone_rows = [ZoneRow(z, r.level, r.price_units, r.traded_wh, r.residual_wh)
                 for z, r in zip(zones, (slot_row(config, slot, *outcome) for outcome in local), strict=True)]
    return replace(row, zones=zone_rows, fee_amount=row.traded_wh * config.fee_units)



def scheme_rows(book, prices_of):
    """Community schemes: every order trades whole at its slot's buy or sell price."""
    rows = []
    for o in book.orders:
        buy, sell = prices_of(o.slot)
        amount = o.energy_wh * buy if o.side == 'buy' else -o.energy_wh * sell
        rows.append(OrderRow(o.participant, o.slot, o.side, o.energy_wh, o.energy_wh, 0, amount, 'cleared'))
    return rows



def public_slot_rows(config, public_slots):
    """SlotRows from the nodes' opened public outputs (public.json 'slots')."""
    if config.mechanism != 'double-auction':
        return [SlotRow(s['slot'], None, None, 0, 0, s['buy_price_units'], s['sell_price_units']) for s in public_slots]
    if config.zoned:
        return [zoned_slot_row(config, s['slot'], [z['zone'] for z in s['zones']],
                               [(_level(z), z['traded_wh'], z['residual_wh']) for z in s['zones']],
                               (_level(s), s['traded_wh'], s['residual_wh'])) for s in public_slots]
    return [slot_row(config, s['slot'], _level(s), s['traded_wh'], s['residual_wh']) for s in public_slots]


def _level(public_slot):
    return public_slot['level'] if public_slot['level'] >= 0 else None



def order_rows(book, excluded, values_of):
    """OrderRows from reconstructed (matched, unmatched, amount) per order; excluded settle with the retailer."""
    if book.config.mechanism != 'double-auction':  # whole orders at the scheme prices
        return [OrderRow(o.participant, o.slot, o.side, o.energy_wh, *values_of(o), 'cleared')
                if o.participant not in excluded else retailer_row(book.config, o, 'excluded')
                for o in book.orders]
    return cleared_rows(book, values_of, excluded)



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
    clearing: ClearingResult
    rows: list
    slots: dict                # slot -> SlotSettlement (the retailer's view)
    bills: list
    stats: dict = field(default_factory=dict)

    def to_dataframe(self, table: str = 'bills', config: MarketConfig | None = None) -> Any:
        """A pandas DataFrame of the bills (default), the rows or the retailer's slots, amounts as exact
        Decimal currency (see mpc_market.market.frames).

        Raises:
            BadParameter: no market is known (pass config=), an unknown table, or no pandas.
        """
        from .frames import settlement_frame
        return settlement_frame(self, _market(config or self.clearing.market), table)


def _market(config: MarketConfig | None) -> MarketConfig:
    if config is None:
        raise BadParameter('config', 'this result carries no market: pass config= (mpc_market.clear attaches it)')
    return config



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
