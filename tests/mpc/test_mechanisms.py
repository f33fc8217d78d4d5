"""The mechanisms behind one interface: the registry, and the benchmarks' pro-rata rule as a
registered mechanism equal to its plaintext reference (one party in this process, and three node
processes)."""

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from mpc_market.common.errors import BadParameter
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.market.rule import prorata_clear_slot
from mpc_market.mpc.inprocess import clear_in_process
from mpc_market.mpc.jobs import job_spec
from mpc_market.mpc.local import clear_mpc

CONFIG = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 1000)


def registry():
    """The registry as a node process sees it (clearing.py imports every implementation)."""
    import mpc_market.mpc.clearing  # noqa: F401 - registers the mechanisms
    from mpc_market.mpc import mechanism
    return mechanism


def test_every_mechanism_is_registered_and_a_job_names_one():
    mechanism = registry()
    assert mechanism.registered() == ['community-scheme', 'flex', 'flex-curve', 'merit-order', 'pro-rata',
                                      'zoned-merit-order']
    spec = job_spec(Book(CONFIG, [Order('a', 0, 'buy', 5, Decimal('0.15'))]), 3, 4096)
    assert mechanism.mechanism_name(spec) == 'merit-order'
    assert mechanism.mechanism_name(replace(spec, allocation='pro-rata')) == 'pro-rata'
    assert mechanism.mechanism_name(replace(spec, zone_names=['z'])) == 'zoned-merit-order'
    assert mechanism.mechanism_name(replace(spec, mechanism='sdr')) == 'community-scheme'
    with pytest.raises(BadParameter, match="no clearing mechanism 'zoned-pro-rata'"):
        mechanism.mechanism_for(replace(spec, zone_names=['z'], allocation='pro-rata'))
    with pytest.raises(BadParameter, match='registered twice'):
        mechanism.register(type('Impostor', (mechanism.Mechanism,), {'name': 'merit-order', 'clear': None}))


def prorata_reference(book):
    """Per slot (level, volume, residual) and per order the matched Wh of the pro-rata rule."""
    k = book.config.levels
    slots, matched = {}, {}
    for slot in book.slots:
        entries = []
        for o in book.orders:
            position = book.positions[(o.participant, o.slot)][0]
            if o.slot == slot and position is not None:
                entries.append((o, ('sell', position) if position < k else ('buy', position - k)))
        level, volume, residual, each = prorata_clear_slot([(s, lv, o.energy_wh) for o, (s, lv) in entries], k)
        slots[slot] = (level, volume, residual)
        matched.update({(o.participant, o.slot): m for (o, _), m in zip(entries, each, strict=True)})
    return slots, matched


@pytest.mark.parametrize('engine', [pytest.param('in-process'), pytest.param('processes', marks=pytest.mark.slow)])
def test_the_pro_rata_mechanism_equals_its_reference_on_random_markets_with_ties(engine):
    rng = random.Random(5)
    orders = [Order(f'p{i:02d}', s, rng.choice(('buy', 'sell')), rng.choice((1, 1000, rng.randint(1, 1000))),
                    Decimal(rng.choice(('0.10', '0.15', '0.20', f'0.1{rng.randint(0, 9)}'))))
              for i in range(14) for s in range(3) if rng.random() < 0.85]
    orders.append(Order('p99', 3, 'buy', 40, Decimal('0.12')))  # a slot with one side only
    book = Book(CONFIG, orders)
    result = clear_in_process(book, allocation='pro-rata') if engine == 'in-process' else \
        clear_mpc(book, allocation='pro-rata', timeout=120)
    slots, matched = prorata_reference(book)
    assert {r.slot: (r.level, r.traded_wh, r.residual_wh) for r in result.slots} == slots
    assert {(r.participant, r.slot): r.matched_wh for r in result.rows} == matched
    assert any(v for v in matched.values()) and result.excluded == []
