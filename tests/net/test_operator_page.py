"""The broker's read-only operator page: public information only, served on the configured
address, rendered by a real headless Chromium (Debian's package; bash .ci/run installs it)."""

import json
import os
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from mpc_market.net import webview

from helpers import read_rows

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


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
                           '--no-first-run', '--user-data-dir=' + args[0], *args[1:]],
                          capture_output=True, text=True, timeout=90)


@pytest.mark.slow
@pytest.mark.deployment
def test_operator_page_in_a_headless_browser(market, tmp_path):
    address = free_address()
    m = market(participants=6, broker_http=address,
               market='[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\n'
                      'zones = true\n[zones]\nnorth = ["p00", "p01", "p02"]\nsouth = ["p03", "p04", "p05"]\n')
    m.open()
    m.submit_individually(m.participants)
    m.close_and_wait()
    m.client('round', 'open', '--round', 'r2', '--slots', '4-5', '--market', m.market, '--gate-closure-in', 600)
    listing = m.client('round', 'list').stdout.splitlines()
    assert listing[0].split()[:3] == ['round', 'day', 'phase']
    assert [line.split()[:3] for line in listing[1:]] == [['r1', '-', 'cleared'], ['r2', '-', 'open']]
    assert 'double-auction+2z' in listing[1]
    url = f'http://{address}/'
    status, headers, text = fetch(url)
    assert status == 200 and "default-src 'none'" in headers['Content-Security-Policy']
    snapshot = json.loads(fetch(url + 'rounds.json')[2])
    phases = {r['round_id']: r['state'] for r in snapshot['rounds']}
    assert phases == {'r1': 'cleared', 'r2': 'open'}
    assert all(n['serving'] for n in snapshot['nodes']) and len(snapshot['nodes']) == 3
    # nothing individual: no participant (the zone map names them), no market text, no live counts
    for name in m.participants:
        assert name not in text and name not in json.dumps(snapshot)
    assert 'price_floor' not in text and 'accepted' not in json.dumps(snapshot)
    public = read_rows(m.dir / 'plain' / 'public.csv')
    cross = [r for r in public if r['market'] == 'cross']
    assert [s['traded_wh'] for s in snapshot['rounds'][0]['results']['slots'] if s['market'] == 'cross'] == \
        [int(r['traded_wh']) for r in cross]
    # the page as a browser renders it: the chart of the finished round is there, and a screenshot
    profile = str(tmp_path / 'chromium-profile')
    dom = chromium(profile, '--dump-dom', url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'data-round="r1"' in dom.stdout and '<svg' in dom.stdout and '<polyline' in dom.stdout
    assert 'node 2: serving' in dom.stdout
    shot = tmp_path / 'operator-page.png'
    result = chromium(profile, f'--screenshot={shot}', '--window-size=1100,900', url)
    assert result.returncode == 0 and shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and shot.stat().st_size > 10000
    artifacts = os.environ.get('MPC_MARKET_TEST_ARTIFACTS')
    if artifacts:
        os.makedirs(artifacts, exist_ok=True)
        shutil.copy(shot, artifacts)
    # read-only: anything but GET/HEAD of the two pages is refused
    assert fetch(url, 'POST')[0] == 405 and fetch(url + 'x')[0] == 404 and fetch(url + '../etc/passwd')[0] == 404


class FakeStore:
    def __init__(self, rounds, public=None):
        self._rounds, self._public = rounds, public or {}

    def rounds(self):
        return self._rounds

    def public(self, round_id, table='public_results'):
        return self._public.get(round_id) if table == 'public_results' else None


class FakeNodes:
    def serving(self):
        return [True, False, True]


def stored_round(**fields):
    return {'round_id': 'r1', 'state': 'failed', 'reason': '', 'gate_closure_ms': 0, 'readings_deadline_ms': 0,
            'day': '', 'settlement': '', 'settle_reason': '', 'attempts': 2, 'slots': [0, 1],
            'market_toml': '[market]\nprice_floor = 0.1\nprice_ceiling = 0.2\ntick = 0.01\n', **fields}


def test_the_page_escapes_everything_and_binds_only_its_address():
    hostile = stored_round(day='<script>alert(1)</script>', round_id='r1<img src=x>',
                           market_toml='[market]\nprice_floor = 0.1\nprice_ceiling = 0.2\n'
                           'tick = 0.01\nzones = true\n[zones]\na = ["alice"]\n')
    body = json.dumps({'slots': [{'slot': 0, 'price': '0.15', 'traded_wh': 5, 'residual_wh': 0}],
                       'participants': 2, 'excluded': 0, 'missing': 1})
    view = webview.OperatorView(FakeStore([hostile], {hostile['round_id']: (body, {0: b'', 1: b'', 2: b''})}),
                                FakeNodes())
    text = webview.page(view.snapshot())
    assert '<script>' not in text and '&lt;script&gt;' in text and 'alice' not in text and '<img' not in text
    assert 'r1&lt;img src=x&gt;' in text
    assert 'node 1: not serving' in text and '2 / 0 / 1' in text and '<svg' in text
    server = webview.start('127.0.0.1:0', view)
    try:
        host, port = server.server_address
        assert host == '127.0.0.1'
        status, headers, _ = fetch(f'http://127.0.0.1:{port}/')
        assert status == 200 and headers['Content-Security-Policy'].startswith("default-src 'none'")
        assert fetch(f'http://127.0.0.1:{port}/', 'HEAD')[:2][0] == 200
        assert fetch(f'http://127.0.0.1:{port}/rounds.json', 'PUT')[0] == 405
        assert fetch(f'http://127.0.0.1:{port}/?x=1')[0] == 404
    finally:
        server.shutdown()


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
    snapshot = webview.OperatorView(FakeStore([stored_round(**fields)]), FakeNodes()).snapshot()
    assert snapshot['rounds'][0]['reason'] == note
    for shown in (webview.page(snapshot), json.dumps(snapshot)):
        assert note in shown
        for secret in ('10.20.30.40', '7101', '192.168.7.3', 'fd00', 'Error', 'Errno', 'Deadline', 'node.db',
                       'sqlite', 'UNAVAILABLE', 'refused'):
            assert secret not in shown, (secret, text)
