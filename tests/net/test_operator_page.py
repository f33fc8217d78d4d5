"""The broker's operator console: public information only, every mechanism and zoned markets shown
for what they publish, charts with axes and slot times, paged history, node health that never
blocks a page; rendered by a real headless Chromium (Debian's package; bash .ci/run installs it)."""

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from decimal import Decimal
from types import SimpleNamespace

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from mpc_market.common import keys
from mpc_market.net import broker as broker_module
from mpc_market.net import metrics, tls, webview
from mpc_market.net.broker import Nodes
from mpc_market.net.store import Round

from helpers import cli, read_rows

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
DA = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\n'
SDR = DA.replace('[market]\n', '[market]\nmechanism = "sdr"\n')
ZONED = (DA + 'zones = true\nnetwork_fee = 0.01\n[zones]\nnorth = ["p00", "p01", "p02"]\n'
         'south = ["p03", "p04", "p05"]\n')


def free_address():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return f'127.0.0.1:{s.getsockname()[1]}'


def fetch(url, method='GET'):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as reply:
            return reply.status, dict(reply.headers), reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def chromium(*args):
    if not CHROMIUM:  # CI (bash .ci/run) installs it and sets MPC_MARKET_REQUIRE_BROWSER: never skipped there
        assert not os.environ.get('MPC_MARKET_REQUIRE_BROWSER'), 'Debian\'s chromium is missing'
        pytest.skip('no chromium on this machine (apt-get install chromium; bash .ci/run does)')
    return subprocess.run([CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                           '--no-first-run', '--hide-scrollbars', '--user-data-dir=' + args[0], *args[1:]],
                          capture_output=True, text=True, timeout=90)


def screenshot(profile, url, shot, size='1300,1250'):
    result = chromium(profile, f'--screenshot={shot}', f'--window-size={size}', url)
    assert result.returncode == 0 and shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and shot.stat().st_size > 10000
    artifacts = os.environ.get('MPC_MARKET_TEST_ARTIFACTS')  # docs/console-*.png are made this way
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(shot, artifacts)


SLOTS = (32, 55)  # 08:00-14:00 UTC of a generated day: the hours the community trades


def write_readings(path, market):
    planned = {(r[0], r[1]): (r[3] if r[2] == 'buy' else -r[3]) for r in market.rows}
    with open(path, 'w') as f:
        f.write('participant,slot,net_wh\n')
        for i, p in enumerate(market.participants):
            for s in range(SLOTS[0], SLOTS[1] + 1):
                f.write(f'{p},{s},{planned.get((p, s), 0) + 7 * (i - 2)}\n')


def run_settled_round(m, round_id, market_file, day):
    m.client('round', 'open', '--round', round_id, '--slots', f'{SLOTS[0]}-{SLOTS[1]}', '--market', market_file,
             '--gate-closure-in', 300, '--readings-deadline-in', 900, '--day', day)
    m.submit_individually(m.participants, round_id)
    m.close_and_wait(round_id, timeout=300)
    readings = m.dir / f'readings-{round_id}.csv'
    write_readings(readings, m)
    m.client('meter', 'submit', '--readings', readings, '--orders', m.orders, '--day', day)
    m.client('round', 'close', '--round', round_id)  # the readings deadline: now
    settled = m.client('round', 'settled', '--round', round_id, '--wait', 300, check=False)
    assert settled.returncode == 0 and 'settled' in settled.stdout, settled.stdout + settled.stderr


def local_public(m, name, text):
    path = m.dir / f'{name}.toml'
    path.write_text(text)
    cli('clear', '--engine', 'plain', '--orders', m.orders, '--config', path, '--out', m.dir / f'local-{name}',
        '--quiet', check=True)
    return path, read_rows(m.dir / f'local-{name}' / 'public.csv')


def community(tmp_path):
    """A generated community of 12 households (orders of 08:00-14:00) and its market as a double
    auction, as sdr and as two zones of 6 with a network fee."""
    cli('generate', '--participants', 12, '--slots', 96, '--seed', 3, '--out', tmp_path / 'community', check=True)
    with open(tmp_path / 'community' / 'orders.csv') as f:
        rows = [(r['participant'], int(r['slot']), r['side'], int(r['energy_wh']), r['limit_price'])
                for r in csv.DictReader(f) if SLOTS[0] <= int(r['slot']) <= SLOTS[1]]
    double_auction = (tmp_path / 'community' / 'market.toml').read_text()
    sdr = double_auction.replace('[market]\n', '[market]\nmechanism = "sdr"\n')
    zoned = (double_auction + 'zones = true\nnetwork_fee = 0.010\n[zones]\n'
             + 'north = [' + ', '.join(f'"h{i:02d}"' for i in range(6)) + ']\n'
             + 'south = [' + ', '.join(f'"h{i:02d}"' for i in range(6, 12)) + ']\n')
    return rows, double_auction, sdr, zoned


@pytest.mark.slow
@pytest.mark.deployment
def test_the_console_shows_settled_double_auction_sdr_and_zoned_rounds_in_a_browser(market, tmp_path):
    address = free_address()
    rows, double_auction, sdr, zoned = community(tmp_path)
    m = market(rows=rows, broker_http=address, market=double_auction)
    sdr_market, sdr_public = local_public(m, 'sdr', sdr)
    zoned_market, zoned_public = local_public(m, 'zoned', zoned)
    started = time.monotonic()
    run_settled_round(m, 'r1', m.market, '2026-12-01')
    print(f'one round cleared and settled in {time.monotonic() - started:.0f} s')
    run_settled_round(m, 'r2', sdr_market, '2026-12-02')
    run_settled_round(m, 'r3', zoned_market, '2026-12-03')
    m.client('round', 'open', '--round', 'r4', '--slots', '32-55', '--market', m.market, '--gate-closure-in', 600)
    url = f'http://{address}/'
    status, headers, text = fetch(url)
    assert status == 200 and headers['Content-Security-Policy'].startswith("default-src 'none'")
    assert '<meta http-equiv="refresh" content="30">' in text
    snapshot = json.loads(fetch(url + 'rounds.json')[2])
    by_id = {r['round_id']: r for r in snapshot['rounds']}
    assert [r['round_id'] for r in snapshot['rounds']] == ['r4', 'r3', 'r2', 'r1']  # newest first
    assert {k: r['phase'] for k, r in by_id.items()} == {'r1': 'settled', 'r2': 'settled', 'r3': 'settled',
                                                         'r4': 'open'}
    for rid in ('r1', 'r2', 'r3'):
        settlement = by_id[rid]['settlement']
        assert settlement['settled'] == 12 and settlement['signatures'] == 3 and settlement['invalid_readings'] == 0
        assert by_id[rid]['results']['signatures'] == 3 and by_id[rid]['slots'] == list(range(SLOTS[0], SLOTS[1] + 1))
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', by_id['r1']['gate_closure'])
    assert isinstance(by_id['r1']['gate_closure_unix_ms'], int)
    # the double auction: the nodes' prices and volumes as the local clear computes them
    plain = [r for r in read_rows(m.dir / 'plain' / 'public.csv') if SLOTS[0] <= int(r['slot']) <= SLOTS[1]]
    r1 = by_id['r1']['results']
    assert r1['kind'] == 'double-auction'
    assert [(s['slot'], s['price'] or '', s['traded_wh']) for s in r1['slots']] == \
        [(int(r['slot']), r['price'], int(r['traded_wh'])) for r in plain] and len(plain) == 24
    assert r1['totals']['traded_wh'] == sum(int(r['traded_wh']) for r in plain) > 0
    # sdr: the buy and sell price of every slot (it publishes no volume: none is shown as 0 Wh)
    r2 = by_id['r2']['results']
    assert r2['kind'] == 'scheme' and by_id['r2']['market']['mechanism'] == 'sdr'
    assert [(s['slot'], s['buy_price'], s['sell_price']) for s in r2['slots']] == \
        [(int(r['slot']), r['buy_price'], r['sell_price']) for r in sdr_public]
    # zoned: every zone's price and volume, the cross-zone auction and the network fees
    r3 = by_id['r3']['results']
    assert r3['kind'] == 'zoned' and by_id['r3']['market']['zones'] == ['north', 'south']
    shown = {(s['slot'], f'zone:{z["zone"]}'): (z['price'] or '', z['traded_wh'])
             for s in r3['slots'] for z in s['zones']}
    shown.update({(s['slot'], 'cross'): (s['cross']['price'] or '', s['cross']['traded_wh']) for s in r3['slots']})
    assert shown == {(int(r['slot']), r['market']): (r['price'], int(r['traded_wh'])) for r in zoned_public
                     if r['market'] != 'network-operator'}
    fees = [r['fee_amount'] for r in zoned_public if r['market'] == 'network-operator']
    assert [s['network_fee']['fee_amount'] for s in r3['slots']] == fees
    # nothing individual: no participant (the zone map names them), no live counts
    pages = [text, fetch(url + 'rounds.json')[2]] + [fetch(f'{url}round/r{i}')[2] for i in (1, 2, 3, 4)]
    for shown_text in pages:
        for name in m.participants:
            assert not re.search(rf'\b{name}\b', shown_text), name
        assert 'accepted' not in shown_text
    # what a reader sees: the sdr page has buy and sell prices and no traded energy
    sdr_page = fetch(url + 'round/r2')[2]
    assert 'buy price' in sdr_page and 'sell price' in sdr_page and 'traded energy per slot' not in sdr_page
    zoned_page = fetch(url + 'round/r3')[2]
    assert 'zone north' in zoned_page and 'zone south' in zoned_page and 'cross-zone auction' in zoned_page
    assert 'network fees' in zoned_page and 'price (currency/kWh)' in zoned_page and '09:00' in zoned_page
    # in a real browser: the DOM it builds, and the screenshots of docs/deployment.md
    profile = str(tmp_path / 'chromium-profile')
    dom = chromium(profile, '--dump-dom', url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-round="r1"' in dom.stdout, dom.stdout[:3000]
    assert '<svg' in dom.stdout and '<circle' in dom.stdout and '<rect' in dom.stdout  # the latest round's charts
    assert re.search(r'node 2</td><td class="ok">serving', dom.stdout), dom.stdout[:3000]
    for rid, name in (('r1', 'double-auction'), ('r2', 'sdr'), ('r3', 'zoned')):
        screenshot(profile, f'{url}round/{rid}', tmp_path / f'console-{name}.png')
    screenshot(profile, url, tmp_path / 'console-rounds.png', size='1400,1000')
    # read-only and strict: anything but GET/HEAD of the known pages is refused
    assert fetch(url, 'POST')[0] == 405 and fetch(url + 'x')[0] == 404 and fetch(url + '../etc/passwd')[0] == 404
    assert fetch(url + 'round/r9')[0] == 404 and fetch(url + '?page=2')[0] == 404
    status, _, scraped = fetch(url + 'metrics')  # the broker's metrics, mounted on its console
    assert status == 200 and 'mpc_market_' in scraped
    assert not any(re.search(rf'\b{p}\b', scraped) for p in m.participants)


# -- the console on a store of given rounds ------------------------------------------------------

class FakeStore:
    def __init__(self, rounds, public=None, settlement=None):
        self._rounds, self._public, self._settlement = rounds, public or {}, settlement or {}

    def rounds(self):
        return self._rounds

    def get(self, round_id):
        return next((r for r in self._rounds if r.round_id == round_id), None)

    def public(self, round_id, table='public_results'):
        return (self._public if table == 'public_results' else self._settlement).get(round_id)


class FakeNodes:
    addresses = ['a', 'b', 'c']

    def serving(self):
        return [True, False, True]


SIGNED = {0: b'', 1: b'', 2: b''}
TOML = '[market]\nprice_floor = 0.1\nprice_ceiling = 0.2\ntick = 0.01\n'


def stored_round(**fields):
    """A Round as BrokerStore.get returns it (defaults: failed r1, two slots, two attempts)."""
    values = {'round_id': 'r1', 'state': 'failed', 'gate_closure_ms': 0, 'attempts': 2, 'slots': (0, 1),
              'market_toml': TOML, **fields}
    return Round(**dict(values, slots=tuple(values['slots'])))


def signed_body(public_csv, mechanism='double-auction', participants=6, excluded=0, missing=0):
    """The body the nodes sign (messages.public_body) for a local clear's public.csv."""
    rows = []
    with open(public_csv) as f:
        for r in csv.DictReader(f):
            rows.append({k: int(v) if k in ('slot', 'traded_wh') or (k == 'residual_wh' and v) else v
                         for k, v in r.items()})
    return json.dumps({'round_id': 'x', 'mechanism': mechanism, 'slots': rows, 'participants': participants,
                       'excluded': excluded, 'missing': missing}, sort_keys=True, separators=(',', ':'))


@pytest.fixture(scope='module')
def cleared(tmp_path_factory):
    """Local clears of one order book under a double auction, sdr and a zoned market: the public
    bodies the nodes publish for them (the deployment test checks that they are equal)."""
    d = tmp_path_factory.mktemp('cleared')
    orders = d / 'orders.csv'
    orders.write_text('participant,slot,side,energy_wh,limit_price\n'
                      'p00,0,buy,500,0.18\np01,0,sell,400,0.12\np02,1,buy,300,0.15\np03,1,sell,300,0.11\n'
                      'p04,2,buy,200,0.19\np05,2,sell,100,0.13\np00,3,buy,100,0.11\np03,3,sell,100,0.19\n')
    out = {}
    for name, text in (('da', DA), ('sdr', SDR), ('zoned', ZONED)):
        (d / f'{name}.toml').write_text(text)
        cli('clear', '--engine', 'plain', '--orders', orders, '--config', d / f'{name}.toml', '--out', d / name,
            '--quiet', check=True)
        out[name] = (text, signed_body(d / name / 'public.csv', 'sdr' if name == 'sdr' else 'double-auction'),
                     read_rows(d / name / 'public.csv'))
    return out


def view_of(cleared, name, **fields):
    text, body, _ = cleared[name]
    round_ = stored_round(state='cleared', market_toml=text, slots=[0, 1, 2, 3], day='2026-12-01', **fields)
    return webview.OperatorView(FakeStore([round_], {'r1': (body, SIGNED)}), FakeNodes())


def test_an_sdr_round_shows_its_buy_and_sell_prices_not_an_empty_price_and_0_wh(cleared):
    _, _, public = cleared['sdr']
    view = view_of(cleared, 'sdr')
    results = view.snapshot()['rounds'][0]['results']
    assert results['kind'] == 'scheme' and results['totals'] == {}
    assert [(s['buy_price'], s['sell_price']) for s in results['slots']] == [(r['buy_price'], r['sell_price'])
                                                                          for r in public]
    text = webview.round_page(view.round('r1'))
    for r in public:
        assert f'<td class="n">{r["buy_price"]}</td><td class="n">{r["sell_price"]}</td>' in text
    assert 'buy price' in text and 'sell price' in text and '0 Wh' not in text and 'traded Wh' not in text
    assert 'price 0-1' not in text and 'publishes only the buy and sell price' in text
    listing = webview.page(view.snapshot())
    assert 'not published' in listing  # its traded energy, in the round list


def test_a_zoned_round_shows_every_zone_the_cross_auction_and_the_fees(cleared):
    _, _, public = cleared['zoned']
    view = view_of(cleared, 'zoned')
    summary = view.snapshot()['rounds'][0]
    assert summary['market']['zones'] == ['north', 'south'] and summary['market']['network_fee'] == '0.01'
    results = summary['results']
    assert results['kind'] == 'zoned'
    zone_rows = {(int(r['slot']), r['market'][5:]): (r['price'] or None, int(r['traded_wh'])) for r in public
                 if r['market'].startswith('zone:')}
    assert {(s['slot'], z['zone']): (z['price'], z['traded_wh']) for s in results['slots'] for z in s['zones']} \
        == zone_rows
    cross = [(r['price'] or None, int(r['traded_wh'])) for r in public if r['market'] == 'cross']
    assert [(s['cross']['price'], s['cross']['traded_wh']) for s in results['slots']] == cross
    assert sum(wh for _, wh in cross) > 0  # the book trades across zones: the cross row is not empty
    fees = [r['fee_amount'] for r in public if r['market'] == 'network-operator']
    assert [s['network_fee']['fee_amount'] for s in results['slots']] == fees
    totals = results['totals']
    assert Decimal(totals['network_fees']) == sum(Decimal(f) for f in fees) > 0
    assert totals['traded_wh'] == sum(wh for _, wh in zone_rows.values()) + sum(wh for _, wh in cross)
    text = webview.round_page(view.round('r1'))
    assert 'zone north' in text and 'zone south' in text and 'cross-zone auction' in text and 'network fees' in text
    for name in ('p00', 'p03'):
        assert name not in text and name not in webview.rounds_json(view.snapshot())


def test_a_double_auction_round_shows_prices_volumes_and_its_trade_value(cleared):
    _, _, public = cleared['da']
    results = view_of(cleared, 'da').snapshot()['rounds'][0]['results']
    assert [(s['price'], s['traded_wh']) for s in results['slots']] == [(r['price'] or None, int(r['traded_wh']))
                                                                         for r in public]
    expected = sum(Decimal(r['price']) * int(r['traded_wh']) / 1000 for r in public if r['price'])
    assert results['totals']['value'] == f'{expected:.5f}' and expected > 0  # exact: amounts have d + 3 decimals


def svg_numbers(svg, pattern):
    return [float(v) for v in re.findall(pattern, svg)]


def test_the_price_axis_starts_at_zero_with_units_and_slot_times():
    # the review's case: 0.060 then 0.053 drew a line from the top to the bottom of the chart
    svg = webview.chart('price', [36, 37], [webview.Series('clearing price', '#c00', (0.060, 0.053))],
                        'price (currency/kWh)', 'currency/kWh', day='2026-12-01')
    labels = re.findall(r'text-anchor="end">([0-9.]+)</text>', svg)
    assert labels[0] == '0.00' and float(labels[-1]) >= 0.06  # the axis runs from 0 up past the price
    points = svg_numbers(svg, r'<circle cx="[0-9.]+" cy="([0-9.]+)"')
    plot_h = 270 - 40 - 56
    assert 0 < points[1] - points[0] < 0.15 * plot_h  # a 12 % drop looks like one
    assert '09:00' in svg and '09:15' in svg and 'price (currency/kWh)' in svg and 'UTC of 2026-12-01' in svg
    # a negative floor puts the zero line inside the axis; volumes switch to kWh when large
    low = webview.chart('p', [0], [webview.Series('x', '#000', (0.05,))], 'price', 'u', y_low=-0.05)
    assert '-0.05' in low
    assert webview._energy_unit(25_000) == (1000, 'kWh') and webview._energy_unit(900) == (1, 'Wh')
    assert (webview.slot_start(0), webview.slot_start(95), webview.slot_start(97)) == ('00:00', '23:45', '00:15 +1d')


def many_rounds(count):
    return [stored_round(round_id=f'r{i:03d}', state='cleared' if i != 7 else 'failed',
                         reason='MPC run failed: [Errno 104] at 10.0.0.9' if i == 7 else '',
                         gate_closure_ms=1_796_000_000_000 + i * 60_000) for i in range(count)]


def test_the_round_list_is_newest_first_and_paged_by_a_bounded_page_number():
    view = webview.OperatorView(FakeStore(many_rounds(45)), FakeNodes())
    first = view.snapshot()
    assert first['pages'] == 3 and first['rounds_total'] == 45 and first['per_page'] == webview.ROUNDS_PER_PAGE
    assert [r['round_id'] for r in first['rounds']][:2] == ['r044', 'r043'] and len(first['rounds']) == 20
    assert [r['round_id'] for r in view.snapshot(3)['rounds']] == ['r004', 'r003', 'r002', 'r001', 'r000']
    assert view.snapshot(4) is None and view.snapshot(0) is None
    # the failed round is on page 2, and still named on every page, with its time and a generic reason
    failed = first['failed_rounds']
    assert [f['round_id'] for f in failed] == ['r007'] and failed[0]['reason'] == 'clearing failed at a node'
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', failed[0]['since'])
    text = webview.page(first)
    assert 'class="alert">round <a href="/round/r007">r007</a> failed since' in text and '10.0.0.9' not in text
    assert '<a href="/?page=2">older rounds</a>' in text
    server = webview.start('127.0.0.1:0', view)
    try:
        base = f'http://127.0.0.1:{server.server_address[1]}'
        assert fetch(base + '/?page=3')[0] == 200 and 'r004' in fetch(base + '/?page=3')[2]
        assert json.loads(fetch(base + '/rounds.json?page=2')[2])['rounds'][0]['round_id'] == 'r024'
        assert fetch(base + '/?page=4')[0] == 404
        for bad in ('0', '-1', 'abc', '1e3', '%D9%A3', '%31', '1000000', '99999999999999999999', '', '1&page=2'):
            assert fetch(base + '/?page=' + bad)[0] == 400, bad
        page = fetch(base + '/round/r007')
        assert page[0] == 200 and 'clearing failed at a node' in page[2] and 'Errno' not in page[2]
        for target in ('/round/', '/round/r999', '/round/..', '/round/r007?x', '/round/r%30', '/round/a/b'):
            assert fetch(base + target)[0] == 404, target
    finally:
        server.shutdown()


def test_the_page_escapes_everything_and_binds_only_its_address():
    hostile = stored_round(day='<script>alert(1)</script>', round_id='r1<img src=x>',
                           market_toml='[market]\nprice_floor = 0.1\nprice_ceiling = 0.2\n'
                           'tick = 0.01\nzones = true\n[zones]\na = ["alice"]\n')
    body = json.dumps({'slots': [{'slot': 0, 'price': '0.15', 'traded_wh': 5, 'residual_wh': 0}],
                       'participants': 2, 'excluded': 0, 'missing': 1})
    view = webview.OperatorView(FakeStore([hostile], {hostile.round_id: (body, SIGNED)}), FakeNodes())
    view.poll_health()
    text = webview.page(view.snapshot())
    assert '<script>' not in text and '&lt;script&gt;' in text and 'alice' not in text and '<img' not in text
    assert 'r1&lt;img src=x&gt;' in text
    assert 'class="down">not serving' in text and '2 / 0 / 1' in text and '<svg' in text
    server = webview.start('127.0.0.1:0', view)
    try:
        host, port = server.server_address
        assert host == '127.0.0.1'
        status, headers, page = fetch(f'http://127.0.0.1:{port}/')
        assert status == 200 and headers['Content-Security-Policy'].startswith("default-src 'none'")
        assert '<meta http-equiv="refresh"' in page and '<script' not in page
        assert fetch(f'http://127.0.0.1:{port}/', 'HEAD')[:2][0] == 200
        assert fetch(f'http://127.0.0.1:{port}/rounds.json', 'PUT')[0] == 405
        assert fetch(f'http://127.0.0.1:{port}/?x=1')[0] == 404
        assert fetch(f'http://127.0.0.1:{port}/metrics')[0] == 404  # no metrics hook given
    finally:
        server.shutdown()


def test_the_broker_metrics_are_served_on_the_console():
    server = webview.start('127.0.0.1:0', webview.OperatorView(FakeStore([]), FakeNodes()),
                           metrics=metrics.metrics_text)  # as the broker mounts them
    try:
        status, headers, text = fetch(f'http://127.0.0.1:{server.server_address[1]}/metrics')
        assert status == 200 and headers['Content-Type'] == metrics.metrics_text()[1]
        assert '# TYPE mpc_market_' in text and headers['Content-Security-Policy'].startswith("default-src 'none'")
    finally:
        server.shutdown()


# -- node health: polled in the background, a hung node never delays a page ----------------------

class HungNode:
    """A TCP listener that accepts and never answers (no TLS handshake, no HTTP/2)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.address = f'127.0.0.1:{self.sock.getsockname()[1]}'
        self.held = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self):
        self.sock.close()
        for conn in self.held:
            conn.close()


def health_server(keys_dir, index):
    server = grpc.server(futures_pool())
    servicer = health.HealthServicer()
    servicer.set('', health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port('127.0.0.1:0', tls.server_credentials(keys_dir, 'nodes', f'node{index}'))
    server.start()
    return server, f'127.0.0.1:{port}'


def futures_pool():
    from concurrent.futures import ThreadPoolExecutor
    return ThreadPoolExecutor(2)


def test_a_hung_node_never_delays_the_page_and_shows_as_not_serving_with_its_age(tmp_path, monkeypatch):
    # polls back to back (not every 5 s): the pages below are fetched while a poll waits on the hung node
    monkeypatch.setattr(webview, 'HEALTH_POLL_S', 0.1)
    # each poll waits this long on the hung node; a page that waited for a poll would take as long
    deadline = 1.5
    monkeypatch.setattr(broker_module, 'HEALTH_DEADLINE_S', deadline)
    d = str(tmp_path / 'keys')
    keys.create_ca(d)
    for i in range(3):
        keys.create_node(d, i)
    keys.create_broker(d)
    (s0, a0), (s2, a2), hung = health_server(d, 0), health_server(d, 2), HungNode()
    nodes = Nodes(SimpleNamespace(keys=d, nodes=[a0, hung.address, a2]))  # the broker's own node client
    server = webview.start('127.0.0.1:0', webview.OperatorView(FakeStore([stored_round()]), nodes))
    base = f'http://127.0.0.1:{server.server_address[1]}'
    try:
        # the first poll waits on the hung node (Nodes.serving's deadline): pages do not
        start = time.monotonic()
        answers = [fetch(base + path) for path in ('/', '/rounds.json', '/round/r1', '/')]
        assert time.monotonic() - start < deadline / 2 and [a[0] for a in answers] == [200] * 4
        assert [n['serving'] for n in json.loads(answers[1][2])['nodes']] == [None, None, None]
        assert 'not checked yet' in answers[0][2]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            nodes_now = json.loads(fetch(base + '/rounds.json')[2])['nodes']
            if nodes_now[0]['serving'] is not None:
                break
            time.sleep(0.2)
        assert [n['serving'] for n in nodes_now] == [True, False, True]
        assert all(re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', n['checked']) for n in nodes_now)
        assert nodes_now[1]['reason'] == webview.Health.NOT_SERVING and isinstance(nodes_now[1]['age_s'], int)
        # polls go on in the background (each waiting the deadline on the hung node); every page is quick
        for _ in range(5):
            start = time.monotonic()
            status, _, text = fetch(base + '/')
            assert status == 200 and time.monotonic() - start < 0.5
            time.sleep(0.1)
        assert 'node 1: not serving since' in text and 'ago' in text and hung.address not in text
    finally:
        server.shutdown()
        nodes.close()
        hung.close()
        s0.stop(None)
        s2.stop(None)


# what the broker stores for failures (gRPC errors name node addresses, nodes report exception
# texts) and the generic note a visitor sees instead
INTERNAL = [
    ('reason', 'node 1 unreachable (<_InactiveRpcError of RPC that terminated with: status = UNAVAILABLE '
               'details = "failed to connect to all addresses; last error: UNKNOWN: ipv4:10.20.30.40:7101: '
               'Failed to connect to remote host: Connection refused">)', 'a node was unreachable'),
    ('reason', 'MPC run failed: ConnectionResetError: [Errno 104] Connection reset by peer (192.168.7.3:11366)',
     'clearing failed at a node'),
    ('reason', 'nodes disagree on the public results', 'the nodes did not sign the same public results'),
    ('settle_reason', 'node 2 unreachable (Deadline Exceeded at [fd00::17]:7102)', 'a node was unreachable'),
    ('settle_reason', 'KeyError: sqlite3.OperationalError at /var/lib/mpc/node.db', 'settlement failed at a node'),
]


@pytest.mark.parametrize('field, text, note', INTERNAL,
                         ids=['unreachable', 'mpc-error', 'disagree', 'settle-unreachable', 'settle-error'])
def test_a_failed_round_shows_a_generic_reason(field, text, note):
    fields = {field: text} if field == 'reason' else {'state': 'cleared', 'settlement': 'failed',
                                                       'readings_deadline_ms': 1, field: text}
    view = webview.OperatorView(FakeStore([stored_round(**fields)]), FakeNodes())
    snapshot = view.snapshot()
    assert snapshot['rounds'][0]['reason'] == note and snapshot['rounds'][0]['failed']
    for shown in (webview.page(snapshot), webview.rounds_json(snapshot), webview.round_page(view.round('r1'))):
        assert note in shown
        for secret in ('10.20.30.40', '7101', '192.168.7.3', 'fd00', 'Error', 'Errno', 'Deadline', 'node.db',
                       'sqlite', 'UNAVAILABLE', 'refused'):
            assert secret not in shown, (secret, text)
