"""The flexibility market's plaintext reference (issue 25, docs/flexibility.md): the worked examples
(a DSO feeder request, an aggregator activation, an under-delivery), the loaders' one-line errors
and property tests of the rule's invariants on random markets."""

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_market.common.errors import InputError
from mpc_market.market.book import Book
from mpc_market.market.config import MarketConfig
from mpc_market.market.flex import (
    FlexMarket,
    FlexOffer,
    FlexRequest,
    clear_flex_plain,
    clear_request,
    delivered_wh,
    load_feeders,
    load_offers,
    load_requests,
    settle_flex_plain,
)
from mpc_market.market.orders import Order
from mpc_market.market.plain import clear_plain
from mpc_market.market.settlement import deviation_price2

from helpers import run_examples

CONFIG = MarketConfig(Decimal('0.05'), Decimal('0.30'), Decimal('0.01'))  # 26 levels, 2 decimals

FEEDERS = {'h1': 'F1', 'h2': 'F1', 'h3': 'F1', 'h4': 'F1', 'h6': 'F1', 'h8': 'F1', 'h5': 'F2'}  # h7: none
OFFERS = [('h1', 2000, '0.10'), ('h2', 1500, '0.12'), ('h3', 3000, '0.15'), ('h4', 1100, '0.15'),
          ('h5', 4000, '0.08'), ('h6', 2000, '0.25'), ('h7', 3000, '0.18'), ('h8', 1000, '0.17')]


def worked_market(pricing='pay-as-clear'):
    """docs/flexibility.md's example: a DSO request on feeder F1 and the aggregator's, slot 0, up."""
    requests = (FlexRequest('d1', 'dso', 'F1', 0, 'up', 5000, Decimal('0.20'), Decimal('0.20')),
                FlexRequest('a1', 'aggregator', '', 0, 'up', 6000, Decimal('0.20'), Decimal('0.20')))
    offers = tuple(FlexOffer(p, 0, 'up', wh, Decimal(price)) for p, wh, price in OFFERS)
    return FlexMarket(CONFIG, requests, offers, FEEDERS, pricing)


def test_worked_example_dso_feeder_request():
    result = clear_flex_plain(worked_market())
    d1 = result.requests[0]
    # F1 at or below 0.20: 2000 @0.10, 1500 @0.12, 4100 @0.15 (h3 + h4); h6 @0.25 is above the cap, h5 on F2
    assert (d1.level, d1.price_units, d1.procured_wh, d1.residual_wh, d1.shortfall_wh) == (10, 15, 4999, 1, 1)
    rows = {a.participant: a for a in result.activations}
    # the marginal level 0.15 shares R = 5000 - 3500 = 1500 of Q = 4100: floor(3000*1500/4100), floor(1100*1500/4100)
    assert [(rows[p].request, rows[p].activated_wh) for p in ('h1', 'h2', 'h3', 'h4')] == \
        [('d1', 2000), ('d1', 1500), ('d1', 1097), ('d1', 402)]
    assert rows['h1'].payment == 2000 * 15 and CONFIG.format_amount(rows['h1'].payment) == '0.30000'
    assert rows['h6'].activated_wh == 0 and rows['h6'].request == ''


def test_worked_example_aggregator_activation():
    result = clear_flex_plain(worked_market())
    a1 = result.requests[1]
    # not reached by d1: h5 @0.08 (F2), h8 @0.17 (F1, above d1's level), h7 @0.18 (no feeder); h6 above the cap
    assert (a1.level, a1.price_units, a1.procured_wh, a1.shortfall_wh) == (13, 18, 6000, 0)
    rows = {a.participant: a for a in result.activations}
    assert [(rows[p].request, rows[p].activated_wh, rows[p].payment) for p in ('h5', 'h8', 'h7')] == \
        [('a1', 4000, 72000), ('a1', 1000, 18000), ('a1', 1000, 18000)]


def test_worked_example_pay_as_bid():
    rows = {a.participant: a for a in clear_flex_plain(worked_market('pay-as-bid')).activations}
    assert [(rows[p].price_units, rows[p].payment) for p in ('h1', 'h3', 'h5', 'h7')] == \
        [(10, 20000), (15, 1097 * 15), (8, 32000), (18, 18000)]


def energy_book():
    return Book(CONFIG, [Order('h1', 0, 'buy', 3000, Decimal('0.25')), Order('h5', 0, 'sell', 2000, Decimal('0.06'))])


def test_worked_example_under_delivery():
    market = worked_market()
    result = clear_flex_plain(market)
    book = energy_book()
    price2 = {s.slot: deviation_price2(CONFIG, s) for s in clear_plain(book).slots}
    assert price2 == {0: 50}  # the energy market cleared 2000 Wh at 0.25
    # h1 (DSO, 2000 up) planned +3000 and metered 1800: delivered 1200; h5 (aggregator, 4000 up) exported 6000
    # instead of 2000: delivered in full; the others metered exactly their adjusted position (-activation)
    readings = {('h1', 0): 1800, ('h5', 0): -6000}
    readings.update({(a.participant, 0): -a.activated_wh for a in result.activations
                     if a.activated_wh and a.participant not in ('h1', 'h5')})
    settled = settle_flex_plain(market, result, book.orders, readings, price2)
    rows = {d.participant: d for d in settled.deliveries}
    h1 = rows['h1']
    assert (h1.planned_wh, h1.adjusted_wh, h1.delivered_wh, h1.undelivered_wh) == (3000, 1000, 1200, 800)
    assert (h1.payment, h1.penalty, h1.flex_net) == (1200 * 15, 800 * 20, 2000)
    h5 = rows['h5']
    assert (h5.planned_wh, h5.adjusted_wh, h5.delivered_wh, h5.penalty, h5.payment) == (-2000, -6000, 4000, 0, 72000)
    imbalance = {i.participant: i for i in settled.imbalances}
    assert imbalance['h5'].deviation_wh == 0 and imbalance['h5'].amount == 0  # delivering is no deviation
    assert imbalance['h1'].deviation_wh == 800  # short, nobody long: at the retail price 0.30
    assert imbalance['h1'].amount == 800 * 30
    assert all(imbalance[p].amount == 0 for p in ('h2', 'h3', 'h4', 'h7', 'h8'))
    assert settled.slots[0].retailer_net == sum(i.amount for i in settled.imbalances)


def test_down_requests_clear_on_down_offers_only():
    requests = (FlexRequest('d', 'aggregator', '', 3, 'down', 1000, Decimal('0.30'), Decimal('0')),)
    offers = (FlexOffer('a', 3, 'down', 700, Decimal('0.07')), FlexOffer('b', 3, 'up', 5000, Decimal('0.05')),
              FlexOffer('c', 3, 'down', 600, Decimal('0.09')), FlexOffer('e', 2, 'down', 600, Decimal('0.05')))
    result = clear_flex_plain(FlexMarket(CONFIG, requests, offers))
    assert [a.activated_wh for a in result.activations] == [700, 0, 300, 0]
    assert result.requests[0].price_units == 9


def test_unmet_request_takes_every_offer_up_to_its_cap_at_the_dearest_activated_price():
    requests = (FlexRequest('d1', 'dso', 'F1', 0, 'up', 50000, Decimal('0.20'), Decimal('0.20')),)
    result = clear_flex_plain(FlexMarket(CONFIG, requests, worked_market().offers, FEEDERS))
    assert result.requests[0].procured_wh == 2000 + 1500 + 3000 + 1100 + 1000
    assert result.requests[0].price_units == 17 and result.requests[0].residual_wh == 0
    assert result.requests[0].shortfall_wh == 50000 - 8600


def test_empty_feeder_and_cap_below_the_floor_procure_nothing():
    requests = (FlexRequest('d9', 'dso', 'F9', 0, 'up', 500, Decimal('0.20'), Decimal('0.20')),
                FlexRequest('a1', 'aggregator', '', 0, 'up', 500, Decimal('0.01'), Decimal('0.01')))
    result = clear_flex_plain(FlexMarket(CONFIG, requests, worked_market().offers, FEEDERS))
    assert [(r.level, r.procured_wh, r.shortfall_wh) for r in result.requests] == [(None, 0, 500), (None, 0, 500)]
    assert all(a.activated_wh == 0 for a in result.activations)


def test_delivery_is_capped_and_never_negative():
    assert delivered_wh('up', 1000, 200, 500) == 500      # over-delivered: capped at the activation
    assert delivered_wh('up', 1000, 1300, 500) == 0       # the wrong way: floor at 0
    assert delivered_wh('down', -500, -200, 500) == 300
    assert delivered_wh('down', 0, None, 500) == 0        # no reading: nothing proven


# -- loaders ------------------------------------------------------------------------------------
def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_loaders_read_the_documented_files(tmp_path):
    requests = load_requests(write(tmp_path, 'r.csv', 'request,buyer,feeder,slot,direction,volume_wh,price_cap\n'
                                   'd1,dso,F1,0,up,5000,0.20\na1,aggregator,,0,down,6000,0.183\n'), CONFIG)
    assert requests[0].penalty_price == Decimal('0.20') and requests[1].penalty_price == Decimal('0.18')
    offers = load_offers(write(tmp_path, 'o.csv', 'participant,slot,direction,volume_wh,price\nh1,0,up,2000,0.10\n'),
                         CONFIG)
    assert offers == [FlexOffer('h1', 0, 'up', 2000, Decimal('0.10'), 2)]
    assert load_feeders(write(tmp_path, 'f.csv', 'participant,feeder\nh1,F1\n')) == {'h1': 'F1'}


@pytest.mark.parametrize('loader, text, where', [
    ('requests', 'request,buyer,feeder,slot,direction,volume_wh,price_cap\nd1,tso,F1,0,up,1,0.2\n', ':2: buyer'),
    ('requests', 'request,buyer,feeder,slot,direction,volume_wh,price_cap\nd1,dso,,0,up,1,0.2\n', ':2: feeder'),
    ('requests', 'request,buyer,feeder,slot,direction,volume_wh,price_cap\nd1,dso,F,0,up,0,0.2\n', ':2: volume_wh'),
    ('requests', 'request,buyer,feeder,slot,direction,volume_wh,price_cap\nd1,dso,F,0,up,1,0.2\n'
                 'd2,dso,F,0,up,1,0.2\n', ':3: slot'),
    ('requests', 'request,buyer,feeder,slot,direction,volume_wh,price_cap,penalty_price\n'
                 'd1,dso,F,0,up,1,0.2,0.001\n', ':2: penalty_price'),
    ('offers', 'participant,slot,direction,volume_wh,price\nh1,0,sideways,1,0.1\n', ':2: direction'),
    ('offers', 'participant,slot,direction,volume_wh,price\nh1,0,up,65536,0.1\n', ':2: volume_wh'),
    ('offers', 'participant,slot,direction,volume_wh,price\nh1,0,up,1,abc\n', ':2: price'),
    ('offers', 'participant,slot,direction,volume_wh,price\nh1,0,up,1,0.1\nh1,0,down,1,0.1\n', ':3: participant'),
    ('offers', 'participant,slot,direction,volume_wh\nh1,0,up,1\n', ':1: price'),
    ('feeders', 'participant,feeder\nh1,F1\nh1,F2\n', ':3: participant'),
])
def test_loaders_name_file_line_and_field(tmp_path, loader, text, where):
    path = write(tmp_path, 'in.csv', text)
    load = {'requests': lambda: load_requests(path, CONFIG), 'offers': lambda: load_offers(path, CONFIG),
            'feeders': lambda: load_feeders(path)}[loader]
    with pytest.raises(InputError) as caught:
        load()
    assert f'{path}{where}' in str(caught.value)
    assert '\n' not in str(caught.value)


# -- properties ---------------------------------------------------------------------------------
SMALL = MarketConfig(Decimal('0.10'), Decimal('0.20'), Decimal('0.01'), 3000)  # 11 levels


@st.composite
def markets(draw, config=SMALL):
    """Random markets: 0-12 participants on 0-2 feeders (or none), offers of both directions with
    tied prices and prices outside the band, DSO and aggregator requests with caps below, inside
    and above the band, for feeders that may be empty."""
    participants = [f'p{i}' for i in range(draw(st.integers(0, 12)))]
    feeder_of = {p: f for p in participants if (f := draw(st.sampled_from(['F0', 'F1', None]))) is not None}
    price = st.sampled_from(['0.05', '0.10', '0.12', '0.12', '0.15', '0.20', '0.25', '0.135'])
    offers = []
    for p in participants:
        for slot in range(2):
            if draw(st.booleans()):
                offers.append(FlexOffer(p, slot, draw(st.sampled_from(['up', 'down'])),
                                        draw(st.one_of(st.integers(1, config.max_order_wh),
                                                       st.sampled_from([1, config.max_order_wh]))),
                                        Decimal(draw(price))))
    requests = []
    for slot in range(2):
        for direction in ('up', 'down'):
            for buyer, feeder in (('dso', 'F0'), ('dso', 'F2'), ('aggregator', '')):
                if draw(st.booleans()):
                    cap = Decimal(draw(st.sampled_from(['0.05', '0.10', '0.13', '0.15', '0.20', '0.30'])))
                    requests.append(FlexRequest(f'{buyer}{feeder}{slot}{direction}', buyer, feeder, slot, direction,
                                                draw(st.integers(1, 3 * config.max_order_wh)), cap, Decimal('0.10')))
    return FlexMarket(config, tuple(requests), tuple(offers), feeder_of,
                      draw(st.sampled_from(['pay-as-clear', 'pay-as-bid'])))


@settings(max_examples=run_examples(200), deadline=None)
@given(markets())
def test_invariants_of_the_clearing(market):
    result = clear_flex_plain(market)
    by_id = {r.request: r for r in market.requests}
    outcome = {o.request: o for o in result.requests}
    for a, offer in zip(result.activations, market.offers, strict=True):
        assert 0 <= a.activated_wh <= offer.volume_wh
        if not a.activated_wh:
            assert a.request == '' and a.payment == 0
            continue
        r, o = by_id[a.request], outcome[a.request]
        assert (r.slot, r.direction) == (offer.slot, offer.direction)
        assert r.buyer == 'aggregator' or market.feeder_of.get(offer.participant) == r.feeder
        level = market.offer_level(offer)
        assert level is not None and level <= o.level <= market.cap_level(r)   # merit order, under the cap
        assert a.price_units == level_price(market, level if market.pricing == 'pay-as-bid' else o.level)
        assert a.payment == a.activated_wh * a.price_units
        if level < o.level:
            assert a.activated_wh == offer.volume_wh                         # better than the margin: in full
    for r in market.requests:
        o = outcome[r.request]
        activated = sum(a.activated_wh for a in result.activations if a.request == r.request)
        assert o.procured_wh == activated <= r.volume_wh
        assert o.shortfall_wh == r.volume_wh - activated
        candidates = [x for x in market.offers if (x.slot, x.direction) == (r.slot, r.direction)]
        assert 0 <= o.residual_wh <= max(0, len(candidates) - 1)  # below one Wh per offer at the margin
        if o.level is None:
            assert activated == 0
        # an unmet request left no eligible offer under its cap unactivated (DSO's) ...
        if o.shortfall_wh > o.residual_wh and r.buyer == 'dso':
            cap = market.cap_level(r)
            for offer, a in zip(market.offers, result.activations, strict=True):
                level = market.offer_level(offer)
                if (offer.slot, offer.direction) == (r.slot, r.direction) and level is not None and cap is not None \
                        and level <= cap and market.feeder_of.get(offer.participant) == r.feeder:
                    assert a.activated_wh == offer.volume_wh


def level_price(market, level):  # noqa: N802 - reads as the rule's P(level)
    return market.config.level_price_units(level)


@settings(max_examples=run_examples(200), deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 5)), st.integers(1, 50)), max_size=8),
       st.integers(1, 200), st.one_of(st.none(), st.integers(0, 5)))
def test_one_request_takes_the_cheapest_first(entries, volume, cap):
    level, target, activated = clear_request(entries, volume, cap)
    eligible = sum(e for lv, e in entries if lv is not None and cap is not None and lv <= cap)
    assert target == min(volume, eligible)
    assert target - len(entries) <= sum(activated) <= target
    for (lv, e), a in zip(entries, activated, strict=True):
        if level is None or lv is None or lv > level:
            assert a == 0
        elif lv < level:
            assert a == e


@settings(max_examples=run_examples(100), deadline=None)
@given(markets(), st.data())
def test_settlement_pays_delivered_and_charges_the_rest(market, data):
    result = clear_flex_plain(market)
    readings = {(o.participant, o.slot): data.draw(st.integers(-6000, 6000)) for o in market.offers
                if data.draw(st.booleans())}
    settled = settle_flex_plain(market, result, [], readings, {})
    penalty = {r.request: market.config.price_units(r.penalty_price) for r in market.requests}
    for d in settled.deliveries:
        assert 0 <= d.delivered_wh <= d.activated_wh and d.delivered_wh + d.undelivered_wh == d.activated_wh
        assert d.penalty == d.undelivered_wh * penalty[d.request]
        assert d.adjusted_wh == d.planned_wh + (-d.activated_wh if d.direction == 'up' else d.activated_wh)
    assert sum(s.retailer_net for s in settled.slots.values()) == sum(i.amount for i in settled.imbalances)


# -- the command line ---------------------------------------------------------------------------
def worked_files(tmp_path):
    """The worked examples as input files: (market, requests, offers, feeders, orders, readings)."""
    requests = ('request,buyer,feeder,slot,direction,volume_wh,price_cap,penalty_price\n'
                'd1,dso,F1,0,up,5000,0.20,0.20\na1,aggregator,,0,up,6000,0.20,0.20\n')
    offers = 'participant,slot,direction,volume_wh,price\n' + ''.join(f'{p},0,up,{wh},{price}\n'
                                                                     for p, wh, price in OFFERS)
    readings = ('participant,slot,net_wh\nh1,0,1800\nh5,0,-6000\nh2,0,-1500\nh3,0,-1097\nh4,0,-402\n'
                'h7,0,-1000\nh8,0,-1000\n')
    return [write(tmp_path, name, text) for name, text in (
        ('market.toml', '[market]\nprice_floor = 0.05\nprice_ceiling = 0.30\ntick = 0.01\n'
                        'start = 2026-06-17T00:00:00Z\n'),
        ('requests.csv', requests), ('offers.csv', offers),
        ('feeders.csv', 'participant,feeder\n' + ''.join(f'{p},{f}\n' for p, f in FEEDERS.items())),
        ('orders.csv', 'participant,slot,side,energy_wh,limit_price\nh1,0,buy,3000,0.25\nh5,0,sell,2000,0.06\n'),
        ('readings.csv', readings))]


def flex_cli(tmp_path, engine, out):
    from helpers import cli
    market, requests, offers, feeders, orders, readings = worked_files(tmp_path)
    return cli('flex', 'settle', '--requests', requests, '--offers', offers, '--config', market, '--feeders', feeders,
               '--orders', orders, '--readings', readings, '--engine', engine, '--out', out, check=True)


def read_rows(path):
    import csv
    with open(path) as f:
        return {(r.get('request') if 'buyer' in r else r['participant']): r for r in csv.DictReader(f)}


def test_cli_worked_examples(tmp_path):
    run = flex_cli(tmp_path, 'plain', tmp_path / 'out')
    assert 'd1: procured 4999 of 5000 Wh at 0.15 EUR/kWh, shortfall 1 Wh' in run.stdout
    assert 'a1: procured 6000 of 6000 Wh at 0.18 EUR/kWh' in run.stdout
    requests = read_rows(tmp_path / 'out' / 'requests.csv')
    assert (requests['d1']['price'], requests['d1']['shortfall_wh'], requests['d1']['slot_start']) == \
        ('0.15', '1', '2026-06-17T00:00:00Z')
    activations = read_rows(tmp_path / 'out' / 'activations.csv')
    assert (activations['h3']['activated_wh'], activations['h3']['payment']) == ('1097', '0.16455')
    deliveries = read_rows(tmp_path / 'out' / 'deliveries.csv')
    h1 = deliveries['h1']
    assert (h1['delivered_wh'], h1['payment'], h1['penalty'], h1['flex_net']) == ('1200', '0.18000', '0.16000',
                                                                                  '0.02000')
    bills = read_rows(tmp_path / 'out' / 'bills.csv')  # 2000 Wh at 0.25 + 1000 from the retailer at 0.30
    assert (bills['h1']['trade_amount'], bills['h1']['deviation_amount'], bills['h1']['flex_revenue'],
            bills['h1']['flex_penalty'], bills['h1']['total_amount']) == ('0.80000', '0.24000', '0.18000', '0.16000',
                                                                          '1.02000')
    assert (bills['h5']['trade_amount'], bills['h5']['flex_revenue'], bills['h5']['total_amount']) == \
        ('-0.50000', '0.72000', '-1.22000')
    imbalances = read_rows(tmp_path / 'out' / 'imbalances.csv')
    assert (imbalances['h1']['deviation_wh'], imbalances['h1']['amount']) == ('800', '0.24000')
    assert (imbalances['h5']['deviation_wh'], imbalances['h5']['amount']) == ('0', '0.00000')


def test_cli_bad_input_is_one_line_and_status_2(tmp_path):
    from helpers import cli
    market, requests, offers, *_ = worked_files(tmp_path)
    bad = write(tmp_path, 'bad.csv', 'participant,slot,direction,volume_wh,price\nh1,0,up,-5,0.1\n')
    run = cli('flex', 'clear', '--requests', requests, '--offers', bad, '--config', market, '--engine', 'plain',
              '--out', tmp_path / 'out')
    assert run.returncode == 2
    assert run.stderr.strip() == f'error: {bad}:2: volume_wh: must be in 1..65535, got -5'
    assert not (tmp_path / 'out').exists()
