"""Plaintext reference of deviation settlement; the MPC engine must agree with it exactly.

Per slot: planned = +energy (buy), -energy (sell), 0 (no order); d = net_wh - planned;
Short = sum max(d, 0), Long = sum max(-d, 0), N = min(Short, Long); P = the slot's deviation
price. A short participant pays d * (N*P + (Short-N)*ceiling) / Short, a long one is paid
|d| * (N*P + (Long-N)*floor) / Long; the retailer receives (Short-N)*ceiling, pays (Long-N)*floor.

Money is in units of 10**-(decimals+3) currency (Wh x price unit), as trade amounts. The rounding
is the floor of Python's ``//`` (towards -inf), and this reference is its definition (the MPC
engine reproduces it exactly): a short participant's amount is floor(d * X_S / Short), a long
one's -floor(|d| * X_L / Long) = ceil(d * X_L / Long), X_S and X_L the short and long side's
money above. With prices >= 0 (X_S, X_L >= 0) that rounds every amount towards zero: nobody pays
more or is paid more than the exact share, nobody long is charged and nobody short is paid. With
a negative deviation price or floor (the double auction's negative prices) X_S or X_L may be
negative: then a short participant may be paid and a long one charged, and such an amount is
rounded away from zero (a short participant is paid up to one unit more, a long one charged up to
one unit more than the exact share). Either way the rounding residue (< 1 unit per participant,
of either sign) goes to the retailer: its net income is exactly what the participants pay net,
so money balances to the unit.

Prices are handled doubled (price2 = 2P) because the no-trade price (floor + ceiling)/2 may fall
halfway between two price units.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import MarketConfig
from .orders import Order


@dataclass(frozen=True)
class SlotSettlement:
    """The retailer's view of a slot (Short, Long and N themselves stay secret under MPC)."""

    retailer_receives: int  # (Short - N) * ceiling, exact
    retailer_pays: int      # (Long - N) * floor, exact
    retailer_net: int       # what the participants pay net: receives - pays + residue

    @property
    def residue(self):
        return self.retailer_net - (self.retailer_receives - self.retailer_pays)


def deviation_price2(config: MarketConfig, slot_row) -> int:  # slot_row: results.SlotRow (which imports this module)
    """2 x the deviation price in price units: twice the clearing price, floor + ceiling if nothing
    traded, or buy + sell price under a community scheme. A zoned slot uses the price of its
    largest market (any zone's or the cross-zone auction; on a volume tie the lower price)."""
    if slot_row.buy_price_units is not None:
        return slot_row.buy_price_units + slot_row.sell_price_units
    markets = [(m.traded_wh, m.level) for m in [slot_row, *(slot_row.zones or ())]]
    return largest_market_price2(markets, config.floor_units, config.price_units(config.tick), config.ceiling_units)


def largest_market_price2(markets: list, floor_units: int, tick_units: int, ceiling_units: int) -> int:
    """2 x the price of a slot's largest market, from [(traded_wh, level or None)] (one market, or
    every zone and the cross auction); on a volume tie the lower level; floor + ceiling if none traded.
    The MPC nodes call this same rule on their opened outputs."""
    trading = [(volume, level) for volume, level in markets if level is not None and level >= 0 and volume > 0]
    if not trading:
        return floor_units + ceiling_units
    _, level = min(trading, key=lambda m: (-m[0], m[1]))
    return 2 * (floor_units + level * tick_units)


def settle_slot(deviations: list[int], price2: int, floor_units: int,
                ceiling_units: int) -> tuple[SlotSettlement, list[int]]:
    """(SlotSettlement, amounts) for the deviations d_i of one slot; amounts > 0 are paid."""
    short = sum(d for d in deviations if d > 0)
    long_ = sum(-d for d in deviations if d < 0)
    netted = min(short, long_)
    short_value2 = netted * price2 + (short - netted) * 2 * ceiling_units   # 2 x money
    long_value2 = netted * price2 + (long_ - netted) * 2 * floor_units
    amounts = []
    for d in deviations:
        if d > 0:
            amounts.append(d * short_value2 // (2 * short))
        elif d < 0:
            amounts.append(-(-d * long_value2 // (2 * long_)))
        else:
            amounts.append(0)
    outcome = SlotSettlement((short - netted) * ceiling_units, (long_ - netted) * floor_units, sum(amounts))
    return outcome, amounts


def planned_position(order: Order | None) -> int:
    """+energy for a buy, -energy for a sell (the whole order), 0 without an order."""
    if order is None:
        return 0
    return order.energy_wh if order.side == 'buy' else -order.energy_wh


def missing_reading_net(order: Order | None) -> int:
    """The missing-reading rule: a (participant, slot) with an order but no valid reading counts
    as importing what it bought and exporting nothing, so an export is never paid without a
    reading and an import is billed as contracted. Its deviation is the unproven sale (short),
    whatever the mechanism. The MPC nodes apply the same rule to a reading package that not every
    node holds or that fails their checks (deviation = sold energy, from the order shares)."""
    return order.energy_wh if order is not None and order.side == 'buy' else 0


def complete_readings(book, readings: dict[tuple[str, int], int]) -> tuple[dict[tuple[str, int], int], list]:
    """(net_of, missing): the readings plus missing_reading_net for every order without one;
    missing lists those orders' (participant, slot)."""
    net_of = dict(readings)
    missing = [(o.participant, o.slot) for o in book.orders if (o.participant, o.slot) not in readings]
    for pair in missing:
        net_of[pair] = missing_reading_net(book.order_of[pair])
    return net_of, missing


def retailer_only_amount(config: MarketConfig, net_wh: int) -> int:
    """What a reading would cost with the retailer alone: imports at ceiling, exports at floor."""
    return net_wh * config.ceiling_units if net_wh >= 0 else net_wh * config.floor_units
