"""Merit order and the zoned market in the plaintext reference: the seed paper's cases I and II,
the rule's invariants on random markets, and the zone inputs' one-line errors."""

import random
from dataclasses import replace
from decimal import Decimal

import pytest

from mpc_market.market import rule
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig, parse_config
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain

from helpers import cli

# The seed paper's 5-peer system (kW read as Wh): floor 0.047, ceiling 0.139, tick 0.001.
SEED = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 1000)
SEED_ORDERS = [Order('P3', 0, 'sell', 200, Decimal('0.048')), Order('P5', 0, 'sell', 180, Decimal('0.050')),
               Order('P2', 0, 'buy', 140, Decimal('0.096')), Order('P4', 0, 'buy', 100, Decimal('0.096'))]
SEED_ZONED = replace(SEED, zoned=True, network_fee=Decimal('0.010'),
                     zone_map=(('P2', 'A'), ('P3', 'B'), ('P4', 'A'), ('P5', 'A')))

BASE = '[market]\nprice_floor = 0.1\nprice_ceiling = 0.2\ntick = 0.01\n'


def rows_of(result):
    return {r.participant: r for r in result.rows}


def test_seed_case_one_merit_order():
    result = clear_plain(Book(SEED, SEED_ORDERS))
    slot = result.slots[0]
    assert (slot.traded_wh, slot.price_units, slot.residual_wh) == (240, 50, 0)
    rows = rows_of(result)
    assert {p: rows[p].matched_wh for p in rows} == {'P3': 200, 'P5': 40, 'P2': 140, 'P4': 100}


def test_seed_case_two_communities_with_a_network_fee():
    result = clear_plain(Book(SEED_ZONED, SEED_ORDERS))
    slot = result.slots[0]
    zones = {z.zone: z for z in slot.zones}
    assert (zones['A'].traded_wh, zones['B'].traded_wh) == (180, 0)
    assert (slot.traded_wh, slot.price_units, slot.residual_wh) == (60, 48, 0)  # across at P3's 0.048
    assert slot.fee_amount == 60 * 10                                           # 0.010/kWh on 60 Wh
    rows = rows_of(result)
    assert (rows['P5'].local_wh, rows['P5'].cross_wh) == (180, 0)
    assert (rows['P3'].local_wh, rows['P3'].cross_wh) == (0, 60)
    # buyers pay their zone's price inside, the cross price plus the fee across
    p2 = rows['P2']
    assert p2.local_wh + p2.cross_wh == 140
    assert p2.amount == p2.local_wh * zones['A'].price_units + p2.cross_wh * (48 + 10)
    assert rows['P3'].amount == -(60 * 48 + 140 * 47)


def test_merit_order_fills_better_orders_and_shares_the_rest_at_the_level():
    entries = [('sell', 1, 100), ('sell', 3, 50), ('sell', 3, 50), ('sell', 5, 40), ('buy', 9, 175)]
    outcome, matched = rule.clear_slot(entries, 11)
    # k* = 3 (S(3) = 200 >= D(3) = 175): candidates 2 (V = 100) and 3 (V = 175) -> level 3, V = 175.
    assert (outcome.level, outcome.traded_wh) == (3, 175)
    # the sell at 1 in full (pro rata would give it 87); the two at 3 share R = 75: 37 each
    assert matched == [100, 37, 37, 0, 175] and outcome.residual_wh == 1


def test_merit_order_at_the_level_with_a_rounding_residual():
    # S(k) < D(k) up to the ceiling: the buys are long. Buys: 10 @ 10 (better than nothing), 7 x 3 @ 9.
    entries = [('sell', 0, 20), ('buy', 10, 10), ('buy', 9, 7), ('buy', 9, 7), ('buy', 9, 7)]
    outcome, matched = rule.clear_slot(entries, 11)
    # k* = 10 (S = 20 >= D(10) = 10); candidates 9 (V = S(9) = 20) and 10 (V = 10): level 9, V = 20.
    assert (outcome.level, outcome.traded_wh) == (9, 20)
    assert matched == [20, 10, 3, 3, 3]           # the buy at 10 in full; R = 10 shared by Q = 21
    assert outcome.residual_wh == 1


def random_entries(rng, n, levels):
    return [(rng.choice(('buy', 'sell')), rng.choice([0, levels - 1, rng.randrange(levels)]),
             rng.choice([1, 1000, rng.randint(1, 1000)])) for _ in range(n)]


def test_merit_order_invariants():
    for seed in range(300):
        check_merit_order(random.Random(seed))


def check_merit_order(rng):
    levels = rng.choice([1, 2, 5, 11])
    entries = random_entries(rng, rng.randint(0, 25), levels)
    outcome, matched = rule.clear_slot(entries, levels)
    sold = sum(m for m, (side, _, _) in zip(matched, entries, strict=True) if side == 'sell')
    bought = sum(m for m, (side, _, _) in zip(matched, entries, strict=True) if side == 'buy')
    assert max(sold, bought) == outcome.traded_wh and abs(sold - bought) == outcome.residual_wh
    if outcome.level is None:
        assert matched == [0] * len(entries)
        return
    k = outcome.level
    for m, (side, level, energy) in zip(matched, entries, strict=True):
        better, worse = (level < k, level > k) if side == 'sell' else (level > k, level < k)
        if better:
            assert m == energy                                    # B <= V: strictly better in full
        elif worse:
            assert m == 0
        else:
            assert 0 <= m <= energy
    # the at-level orders of the long side share R = V - B: each floor(E*R/Q)
    for side in ('sell', 'buy'):
        at = [e for (s, lv, e) in entries if s == side and lv == k]
        got = [m for m, (s, lv, _) in zip(matched, entries, strict=True) if s == side and lv == k]
        total = sum(m for m, (s, _, _) in zip(matched, entries, strict=True) if s == side)
        better_total = total - sum(got)
        remaining, quantity = outcome.traded_wh - better_total, sum(at)
        if quantity and (sold if side == 'sell' else bought) == outcome.traded_wh - outcome.residual_wh:
            assert got == [e * remaining // quantity for e in at]


def test_zoned_invariants():
    for seed in range(300):
        check_zoned(random.Random(seed))


def check_zoned(rng):
    levels, zones = rng.choice([3, 11]), ['a', 'b', 'c'][:rng.randint(1, 3)]
    fee = rng.choice([0, 1, 2])
    entries = [e + (rng.choice(zones),) for e in random_entries(rng, rng.randint(0, 25), levels)]
    local, cross, first, second = rule.clear_zoned_slot(entries, zones, levels, fee)
    for zone, outcome in zip(zones, local, strict=True):
        members = [i for i, e in enumerate(entries) if e[3] == zone]
        alone, matched = rule.clear_slot([entries[i][:3] for i in members], levels)
        assert alone == outcome and matched == [first[i] for i in members]   # stage 1 is the zone alone
    sides = {}
    for (side, level, energy, zone), m1, m2 in zip(entries, first, second, strict=True):
        assert 0 <= m1 + m2 <= energy
        if m2:
            sides.setdefault(zone, set()).add(side)
            if side == 'buy':
                assert level - fee >= cross.level                           # the fee lowers the buy limit
    assert all(len(s) == 1 for s in sides.values())                        # every stage-2 trade crosses zones
    sold = sum(m for m, e in zip(second, entries, strict=True) if e[0] == 'sell')
    bought = sum(m for m, e in zip(second, entries, strict=True) if e[0] == 'buy')
    assert max(sold, bought) == cross.traded_wh and abs(sold - bought) == cross.residual_wh


def test_a_scheme_on_a_zoned_market_file_ignores_the_zones():
    config = parse_config('m.toml', BASE + 'zones = true\nnetwork_fee = 0.02\nmechanism = "sdr"\n[zones]\na = ["p"]\n')
    assert (config.mechanism, config.zoned, config.fee_units, config.zone_of) == ('sdr', False, 0, {})


@pytest.mark.parametrize('text', [BASE, BASE + 'mechanism = "mmr"\n', BASE + '[zones]\n',
                                  '# c\n' + BASE + 'zones = true\n[zones]\na = ["p"]\n'])
def test_with_mechanism_sets_the_round_mechanism(text):
    from mpc_market.market.config import with_mechanism
    text = text.replace('[zones]\n', '') if 'zones = true' not in text else text
    assert parse_config('m', with_mechanism('m', text, 'bill-sharing')).mechanism == 'bill-sharing'
    assert parse_config('m', with_mechanism('m', text, 'double-auction')).mechanism == 'double-auction'


def test_zone_map_and_fee_in_the_market_file():
    config = parse_config('m.toml', '[market]\nprice_floor = 0.1\nprice_ceiling = 0.2\ntick = 0.01\nzones = true\n'
                                    'network_fee = 0.02\n[zones]\nnorth = ["a", "b"]\nsouth = ["c"]\n')
    assert config.zoned and config.fee_levels == 2 and config.fee_units == 2
    assert config.zone_of == {'a': 'north', 'b': 'north', 'c': 'south'}



@pytest.mark.parametrize('toml_text, line, field', [
    (BASE + 'zones = "yes"\n', 5, 'zones'),
    (BASE + 'network_fee = 0.01\n', 5, 'network_fee'),                    # a fee without zones
    (BASE + 'zones = true\nnetwork_fee = 0.015\n', 6, 'network_fee'),      # off the tick grid
    (BASE + 'zones = true\nnetwork_fee = 0.5\n', 6, 'network_fee'),        # above ceiling - floor
    (BASE + '[zones]\na = ["p1"]\n', 5, 'zones'),                         # a map without zones = true
    (BASE + 'zones = true\n[zones]\n"../x" = ["p1"]\n', 7, 'zones'),
    (BASE + 'zones = true\n[zones]\na = ["p1"]\nb = ["p1"]\n', 8, 'b'),  # one participant, two zones
    (BASE + 'zones = true\n[zones]\na = "p1"\n', 7, 'a'),
])
def test_bad_zone_config_is_a_one_line_error(tmp_path, toml_text, line, field):
    (tmp_path / 'm.toml').write_text(toml_text)
    (tmp_path / 'o.csv').write_text('participant,slot,side,energy_wh,limit_price\np1,0,buy,5,0.15\n')
    proc = cli('clear', '--engine', 'plain', '--orders', tmp_path / 'o.csv', '--config', tmp_path / 'm.toml',
               '--out', tmp_path / 'out')
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr
    assert f'm.toml:{line}: {field}:' in proc.stderr, proc.stderr
    assert not (tmp_path / 'out').exists()


@pytest.mark.parametrize('orders, line', [
    ('participant,slot,side,energy_wh,limit_price\np1,0,buy,5,0.15\n', 2),                 # no zone at all
    ('participant,slot,side,energy_wh,limit_price,zone\np1,0,buy,5,0.15,a\np1,1,buy,5,0.15,b\n', 3),
    ('participant,slot,side,energy_wh,limit_price,zone\np1,0,buy,5,0.15,../a\n', 2),
    ('participant,slot,side,energy_wh,limit_price,zone\np2,0,buy,5,0.15,b\n', 2),          # map says a
])
def test_bad_zones_in_orders_are_one_line_errors(tmp_path, orders, line):
    (tmp_path / 'm.toml').write_text(BASE + 'zones = true\n[zones]\na = ["p2"]\n')
    (tmp_path / 'o.csv').write_text(orders)
    proc = cli('clear', '--engine', 'plain', '--orders', tmp_path / 'o.csv', '--config', tmp_path / 'm.toml',
               '--out', tmp_path / 'out')
    assert proc.returncode == 2 and proc.stderr.count('\n') == 1, proc.stderr
    assert f'o.csv:{line}: zone:' in proc.stderr, proc.stderr


def test_schemes_ignore_zones(tmp_path):
    (tmp_path / 'm.toml').write_text(BASE + 'zones = true\nnetwork_fee = 0.01\n')
    (tmp_path / 'o.csv').write_text('participant,slot,side,energy_wh,limit_price,zone\n'
                                    'p1,0,buy,5,0.15,a\np2,0,sell,5,0.12,b\n')
    (tmp_path / 'r.csv').write_text('participant,slot,net_wh\np1,0,5\np2,0,-5\n')
    cli('settle', '--engine', 'plain', '--mechanism', 'sdr', '--orders', tmp_path / 'o.csv', '--readings',
        tmp_path / 'r.csv', '--config', tmp_path / 'm.toml', '--out', tmp_path / 'out', check=True)
    assert (tmp_path / 'out' / 'public.csv').read_text().startswith('slot,slot_start,buy_price,sell_price\n')


def test_a_zone_of_one_or_two_participants_is_warned(tmp_path):
    (tmp_path / 'm.toml').write_text(BASE + 'zones = true\n')
    (tmp_path / 'o.csv').write_text('participant,slot,side,energy_wh,limit_price,zone\np1,0,buy,5,0.15,a\n'
                                    'p2,0,sell,5,0.12,b\np3,0,sell,5,0.12,b\np4,0,buy,5,0.12,b\n')
    proc = cli('clear', '--engine', 'plain', '--orders', tmp_path / 'o.csv', '--config', tmp_path / 'm.toml',
               '--out', tmp_path / 'out', check=True)
    assert 'warning: zone a has 1 participant with orders' in proc.stderr and 'zone b' not in proc.stderr


def test_too_many_zones_is_a_one_line_error(tmp_path):
    (tmp_path / 'm.toml').write_text(BASE + 'zones = true\n')
    rows = ''.join(f'p{i},0,buy,5,0.15,z{i}\n' for i in range(257))
    (tmp_path / 'o.csv').write_text('participant,slot,side,energy_wh,limit_price,zone\n' + rows)
    proc = cli('clear', '--engine', 'plain', '--orders', tmp_path / 'o.csv', '--config', tmp_path / 'm.toml',
               '--out', tmp_path / 'out')
    assert proc.returncode == 2 and 'o.csv:258: zone: 257 zones; at most 256' in proc.stderr
