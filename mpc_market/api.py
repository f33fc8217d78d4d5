"""The Python API for scripts and notebooks: load a market, clear it, settle it.

Every function here is a thin, documented entry to the packages below (``market``, ``mpc``); the
CLI calls the same functions. Secure and plaintext engines return the same dataclasses, so a
script can compare them row for row::

    import mpc_market as mm
    book = mm.load_book('community/orders.csv', 'community/market.toml')
    secure = mm.clear(book, engine='mpc', nodes=3)
    assert secure.rows == mm.clear(book, engine='plain').rows
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping

from .common.errors import BadParameter
from .market.book import Book
from .market.config import MarketConfig, load_config
from .market.orders import load_orders, resolve_zones
from .market.plain import clear_plain, settle_plain
from .market.readings import load_readings
from .market.results import ClearingResult, SettlementResult
from .market.settlement import complete_readings
from .mpc.jobs import ORDERS_PER_CHUNK

__all__ = ['ENGINES', 'MODES', 'load_book', 'load_meter_readings', 'clear', 'settle']

ENGINES = ('mpc', 'plain')
MODES = ('local', 'peers')

Progress = Callable[[str, int, int], None]


def load_book(orders: str | os.PathLike, config: str | os.PathLike | MarketConfig,
              mechanism: str | None = None, readings: Mapping[tuple[str, int], int] | None = None) -> Book:
    """Read an orders file (CSV or JSON) under a market and index it for clearing.

    Args:
        orders: path of the orders file (``participant,slot,side,energy_wh,limit_price``).
        config: path of the market TOML, or a ``MarketConfig`` already loaded.
        mechanism: override the market's mechanism (``double-auction``, ``sdr``, ``mmr``,
            ``bill-sharing``).
        readings: meter readings ``{(participant, slot): net_wh}`` when the book will be settled;
            participants with a reading but no order then get a row too.

    Returns:
        The ``Book``: participants, slots and every order's position in the price levels.

    Raises:
        InputError: a file is missing or malformed (the message names file, line and field).
    """
    if not isinstance(config, MarketConfig):
        config = load_config(os.fspath(config))
    if mechanism is not None:  # the community schemes price whole slots and ignore zones
        config = dataclasses.replace(config, mechanism=mechanism, zoned=config.zoned and mechanism == 'double-auction')
    order_list = load_orders(os.fspath(orders), config)
    return Book(config, order_list, extra_pairs=list(readings) if readings is not None else (),
                zones=resolve_zones(os.fspath(orders), config, order_list))


def load_meter_readings(path: str | os.PathLike,
                        config: str | os.PathLike | MarketConfig) -> dict[tuple[str, int], int]:
    """Read meter readings (``participant,slot,net_wh``; + imported, - exported).

    Args:
        path: the readings CSV.
        config: the market (path or ``MarketConfig``); readings above ``max_reading_wh`` are refused.

    Returns:
        ``{(participant, slot): net_wh}``; pass it to ``load_book(..., readings=)`` and ``settle``.

    Raises:
        InputError: a malformed or duplicate reading (the message names file, line and field).
    """
    if not isinstance(config, MarketConfig):
        config = load_config(os.fspath(config))
    return {pair: net for pair, (net, _) in load_readings(os.fspath(path), config).items()}


def clear(book: Book, engine: str = 'mpc', nodes: int = 3, mode: str = 'local', chunk: int = ORDERS_PER_CHUNK,
          progress: Progress | None = None, timeout: float | None = None,
          committee: int | None = None) -> ClearingResult:
    """Clear every slot of a book: prices, volumes and each order's match and amount.

    Args:
        book: the orders (see ``load_book``).
        engine: ``'mpc'`` (node processes on this machine, client-side Shamir sharing, TLS links)
            or ``'plain'`` (the plaintext reference; identical results).
        nodes: market nodes for ``engine='mpc'``: 3..11 (threshold (nodes-1)/2).
        mode: ``'local'`` (independent nodes, scenario S2/S3) or ``'peers'`` (scenario S1: the
            participants run the nodes, every one up to 7, else a committee drawn by lottery;
            ``nodes`` is then ignored).
        chunk: orders shared and validated per batch (memory vs. rounds).
        committee: with ``mode='peers'``: the committee size, 3..11 (default: every peer up to 7,
            else 5).
        progress: called as ``progress(phase, done, total)`` while the nodes work.
        timeout: seconds before a stuck run is stopped.

    Returns:
        A ``ClearingResult`` (public slot rows, every participant's order rows, timings) that knows its
        market: ``result.to_dataframe()`` gives Decimal prices and amounts in its currency.

    Raises:
        EngineError: a node failed or timed out, or the nodes disagree.
        BadParameter: an unknown engine or mode, or a node count outside 3..11.
    """
    if engine not in ENGINES or mode not in MODES:
        raise BadParameter('engine', f'engine must be one of {ENGINES} and mode one of {MODES}')
    if engine == 'plain':
        result = clear_plain(book)
    else:
        from .mpc.local import clear_mpc, clear_peers
        result = clear_peers(book, committee, progress=progress, timeout=timeout) if mode == 'peers' else \
            clear_mpc(book, nodes=nodes, chunk=chunk, progress=progress, timeout=timeout)
    return dataclasses.replace(result, market=book.config)  # for to_dataframe and plot_prices


def settle(book: Book, readings: Mapping[tuple[str, int], int], engine: str = 'mpc', nodes: int = 3,
           chunk: int = ORDERS_PER_CHUNK, progress: Progress | None = None,
           timeout: float | None = None) -> SettlementResult:
    """Clear a book and settle every deviation from its meter readings, with bills.

    Args:
        book: the orders, loaded with ``readings`` (see ``load_book``).
        readings: ``{(participant, slot): net_wh}`` (see ``load_meter_readings``).
        engine: ``'mpc'`` (one MPC session clears and settles) or ``'plain'``.
        nodes, chunk, progress, timeout: as for ``clear``.

    Returns:
        A ``SettlementResult``: the clearing, one row per order or reading, the retailer's view
        per slot and one ``Bill`` per participant.

    Raises:
        EngineError: a node failed or timed out.
        BadParameter: an unknown engine.

    An order without a reading is settled by the missing-reading rule
    (``market.settlement.missing_reading_net``: its bought energy counts as imported, nothing as
    exported), as the deployed nodes settle a reading package they do not all hold.
    """
    if engine not in ENGINES:
        raise BadParameter('engine', f'engine must be one of {ENGINES}')
    net_of, _ = complete_readings(book, dict(readings))
    if engine == 'plain':
        result = settle_plain(book, net_of)
    else:
        from .mpc.local import settle_mpc
        result = settle_mpc(book, net_of, nodes=nodes, chunk=chunk, progress=progress, timeout=timeout)
    return dataclasses.replace(result, clearing=dataclasses.replace(result.clearing, market=book.config))
