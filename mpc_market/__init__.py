"""mpc_market: a privacy-preserving clearing house for local electricity markets.

Prosumers and consumers submit buy and sell orders per 15-minute slot; independent market nodes
clear the market under secure multiparty computation (MPyC, Shamir shares, honest majority), and
grid operators get per-feeder totals through Paillier aggregation. This package is organised by
trust role:

- ``mpc_market.market``: the market rule in the clear (config, orders, readings, book, clearing
  rule, settlement, community schemes, result and bill types, CSV output, generator);
- ``mpc_market.mpc``: the secure protocol (field shares, jobs, primitives, clearing, settlement
  and scheme protocols, the party process, local runs);
- ``mpc_market.net``: the deployment over gRPC (signed messages, TLS, configs, storage, node,
  broker, client);
- ``mpc_market.stats``: grid-operator statistics (Paillier keys, encryption, aggregation, release);
- ``mpc_market.common``: errors, names, files, keys and readers every role shares;
- ``mpc_market.cli``: the ``mpc-market`` command.

The names below are the public API (see ``docs/api.md`` and ``examples/``)::

    import mpc_market as mm
    book = mm.load_book('community/orders.csv', 'community/market.toml')
    result = mm.clear(book, engine='mpc', nodes=3)
    for slot in result.slots:
        print(slot.slot, slot.price_units, slot.traded_wh)
"""

import importlib
from typing import Any

# name -> module: imported on first use, so a node process that imports mpc_market.mpc.node does not
# pay for the API, the statistics and their dependencies (PEP 562)
_EXPORTS = {
    **dict.fromkeys(('ENGINES', 'MODES', 'clear', 'load_book', 'load_meter_readings', 'settle'), 'api'),
    **dict.fromkeys(('EngineError', 'InputError', 'KeyFileError', 'MarketError', 'Refused'), 'common.errors'),
    'Book': 'market.book',
    **dict.fromkeys(('MECHANISMS', 'MarketConfig', 'load_config'), 'market.config'),
    'write_community': 'market.generate',
    **dict.fromkeys(('Order', 'load_orders'), 'market.orders'),
    **dict.fromkeys(('write_results', 'write_settlement'), 'market.output'),
    **dict.fromkeys(('Bill', 'ClearingResult', 'OrderRow', 'SettlementResult', 'SettlementRow', 'SlotRow', 'ZoneRow'),
                    'market.results'),
    **dict.fromkeys(('clear_slot', 'clear_zoned_slot'), 'market.rule'),
    'scheme_prices': 'market.schemes',
    **dict.fromkeys(('plot_market', 'plot_prices'), 'plots'),
    'SlotSettlement': 'market.settlement',
    'Aggregator': 'stats.aggregate',
    'generate_operator_key': 'stats.paillier:generate',
    'decrypt_bundle': 'stats.release',
    'encrypt_day': 'stats.submission',
}


def __getattr__(name: str) -> Any:  # the lazily imported export (any of them)
    if name not in _EXPORTS:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    module, _, attribute = _EXPORTS[name].partition(':')
    value = getattr(importlib.import_module(f'{__name__}.{module}'), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = '0.1.0'

__all__ = sorted(_EXPORTS)  # the public API is exactly what _EXPORTS can load
