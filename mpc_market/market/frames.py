"""Results as the field reads them: prices and amounts as exact ``Decimal`` currency, slots with
their UTC start, and pandas DataFrames of orders, slots, settlement rows and bills.

The integers stay the source of truth (``OrderRow.amount`` is in 10**-(decimals+3) currency,
``SlotRow.price_units`` in 10**-decimals currency per kWh); every Decimal here is their exact value
(``Decimal.scaleb``, no float), so a DataFrame sums to the cent what the bills say. pandas is
optional: ``pip install -e '.[data]'``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeAlias

from ..common.errors import BadParameter
from .config import MarketConfig

# results.ClearingResult / SettlementResult (whose to_dataframe imports this module: no import back)
ClearingResult: TypeAlias = Any
SettlementResult: TypeAlias = Any

ORDER_TABLES = ('orders', 'slots')
SETTLEMENT_TABLES = ('rows', 'bills', 'slots')


def price(config: MarketConfig, units: int | None) -> Decimal | None:
    """The exact price in currency per kWh of integer price units (None stays None)."""
    return None if units is None else Decimal(units).scaleb(-config.decimals)


def amount(config: MarketConfig, units: int) -> Decimal:
    """The exact money in currency of an integer amount (10**-(decimals+3) currency)."""
    return Decimal(units).scaleb(-(config.decimals + 3))


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise BadParameter('pandas', "to_dataframe needs pandas: pip install -e '.[data]'") from None
    return pandas


def _frame(records: list[dict[str, Any]], columns: list[str]) -> Any:
    pandas = _pandas()
    frame = pandas.DataFrame.from_records(records, columns=columns)
    for column in frame.columns:  # integers stay integers (pandas would make a column with a None float)
        if column in ('slot', 'meters') or column.endswith(('_units', '_wh')):
            frame[column] = frame[column].astype('Int64')
    if 'slot_start' in frame:
        frame['slot_start'] = pandas.to_datetime(frame['slot_start'], utc=True)
    return frame


def order_records(result: ClearingResult, config: MarketConfig) -> list[dict[str, Any]]:
    """One dict per order row: the row's fields, its slot_start and its amount as Decimal currency."""
    return [{'participant': r.participant, 'slot': r.slot, 'slot_start': config.slot_start(r.slot), 'side': r.side,
             'energy_wh': r.energy_wh, 'matched_wh': r.matched_wh, 'unmatched_wh': r.unmatched_wh,
             'amount': amount(config, r.amount), 'amount_units': r.amount, 'status': r.status, 'zone': r.zone,
             'local_wh': r.local_wh, 'cross_wh': r.cross_wh, 'currency': config.currency} for r in result.rows]


def slot_records(result: ClearingResult, config: MarketConfig) -> list[dict[str, Any]]:
    """One dict per slot: price (Decimal currency/kWh or None: no local trade), volumes, scheme prices."""
    return [{'slot': s.slot, 'slot_start': config.slot_start(s.slot), 'price': price(config, s.price_units),
             'price_units': s.price_units, 'traded_wh': s.traded_wh, 'residual_wh': s.residual_wh,
             'buy_price': price(config, s.buy_price_units), 'sell_price': price(config, s.sell_price_units),
             'fee_amount': amount(config, s.fee_amount), 'currency': config.currency} for s in result.slots]


def clearing_frame(result: ClearingResult, config: MarketConfig, table: str = 'orders') -> Any:
    """A DataFrame of a clearing's orders (default) or slots.

    Args:
        result: the ClearingResult.
        config: its market (prices, currency, slot times).
        table: 'orders' (one row per order) or 'slots' (one row per slot).

    Returns:
        A pandas DataFrame; prices and amounts are exact Decimals, slot_start is UTC (NaT without a start).

    Raises:
        BadParameter: an unknown table, or pandas is not installed.
    """
    if table not in ORDER_TABLES:
        raise BadParameter('table', f'table must be one of {", ".join(ORDER_TABLES)}, got {table!r}')
    if table == 'orders':
        records = order_records(result, config)
        return _frame(records, list(records[0]) if records else ['participant', 'slot', 'slot_start', 'amount'])
    records = slot_records(result, config)
    return _frame(records, list(records[0]) if records else ['slot', 'slot_start', 'price'])


def settlement_frame(result: SettlementResult, config: MarketConfig, table: str = 'bills') -> Any:
    """A DataFrame of a settlement's bills (default), rows or per-slot retailer figures.

    Args:
        result: the SettlementResult.
        config: its market.
        table: 'bills' (one per participant), 'rows' (one per order or reading) or 'slots' (the retailer's view).

    Returns:
        A pandas DataFrame with exact Decimal amounts.

    Raises:
        BadParameter: an unknown table, or pandas is not installed.
    """
    if table not in SETTLEMENT_TABLES:
        raise BadParameter('table', f'table must be one of {", ".join(SETTLEMENT_TABLES)}, got {table!r}')
    if table == 'bills':
        records = [{'participant': b.participant, 'trade_amount': amount(config, b.trade_amount),
                    'deviation_amount': amount(config, b.deviation_amount),
                    'total_amount': amount(config, b.total_amount),
                    'retailer_only_amount': amount(config, b.retailer_only_amount),
                    'saving': amount(config, b.saving), 'currency': config.currency} for b in result.bills]
        return _frame(records, list(records[0]) if records else ['participant', 'total_amount'])
    if table == 'rows':
        records = [{'participant': r.participant, 'slot': r.slot, 'slot_start': config.slot_start(r.slot),
                    'side': r.side, 'energy_wh': r.energy_wh, 'matched_wh': r.matched_wh,
                    'amount': amount(config, r.amount), 'net_wh': r.net_wh, 'deviation_wh': r.deviation_wh,
                    'deviation_amount': amount(config, r.deviation_amount),
                    'total_amount': amount(config, r.total_amount), 'status': r.status,
                    'currency': config.currency} for r in result.rows]
        return _frame(records, list(records[0]) if records else ['participant', 'slot', 'slot_start'])
    records = [{'slot': slot, 'slot_start': config.slot_start(slot),
                'retailer_receives': amount(config, s.retailer_receives),
                'retailer_pays': amount(config, s.retailer_pays), 'retailer_net': amount(config, s.retailer_net),
                'currency': config.currency} for slot, s in sorted(result.slots.items())]
    return _frame(records, list(records[0]) if records else ['slot', 'slot_start'])
