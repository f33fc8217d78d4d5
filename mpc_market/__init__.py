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

from .api import ENGINES, MODES, clear, load_book, load_meter_readings, settle
from .common.errors import EngineError, InputError, KeyFileError, MarketError, Refused
from .market.book import Book
from .market.config import MECHANISMS, MarketConfig, load_config
from .market.generate import write_community
from .market.orders import Order, load_orders
from .market.output import write_results, write_settlement
from .market.results import Bill, ClearingResult, OrderRow, SettlementResult, SettlementRow, SlotRow
from .market.rule import clear_slot
from .market.schemes import scheme_prices
from .market.settlement import SlotSettlement
from .stats.aggregate import Aggregator
from .stats.paillier import generate as generate_operator_key
from .stats.release import decrypt_bundle
from .stats.submission import encrypt_day

__version__ = '0.1.0'

__all__ = [
    # loading and running
    'load_config', 'load_orders', 'load_book', 'load_meter_readings', 'write_community',
    'clear', 'settle', 'ENGINES', 'MODES', 'MECHANISMS',
    # the market rule and schemes in the clear
    'clear_slot', 'scheme_prices',
    # types
    'MarketConfig', 'Order', 'Book', 'ClearingResult', 'SlotRow', 'OrderRow', 'SettlementResult',
    'SettlementRow', 'SlotSettlement', 'Bill',
    # output
    'write_results', 'write_settlement',
    # grid statistics
    'generate_operator_key', 'encrypt_day', 'Aggregator', 'decrypt_bundle',
    # errors
    'MarketError', 'InputError', 'KeyFileError', 'EngineError', 'Refused',
]
