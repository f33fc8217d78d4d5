"""A market day with flexibility in a deployment (issue 25): an energy round with a readings window
whose clearing releases the per-feeder planned net positions (the DSO's congestion check), a DSO
(and aggregator) flexibility round bound to it with `round open --flex ... --energy-round`,
the meter readings, and one settlement that delivers the activations: every participant's bill
from its own shares equals `mpc-market flex settle --engine plain` on the same files (trade,
deviation from the adjusted position, flexibility revenue and penalty, total).

The binding is checked by every node against its own store, not the broker's word: a second
flexibility round for the same energy round, one for an energy round without readings or of
another market, or one after the energy round settled are refused; a broker hiding the binding
from clients is refused by them."""

import dataclasses

import pytest

from mpc_market.net import webview
from mpc_market.net.client import BrokerClient
from mpc_market.net.store import Round

from ..helpers import assert_lies_refused, cli, read_bytes, read_rows, wait_for

DAY = '2026-12-01'
MARKET = ('[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\nzones = true\n'
          'network_fee = 0.01\nfeeder_min_cohort = 3\n\n'
          '[zones]\nF1 = ["p00", "p01", "p02"]\nF2 = ["p03", "p04", "p05"]\n')
ORDERS = ('participant,slot,side,energy_wh,limit_price\n'
          'p00,0,buy,600,0.18\np01,0,buy,300,0.16\np02,0,sell,200,0.12\np03,0,sell,500,0.11\n'
          'p04,0,buy,400,0.19\np05,0,sell,300,0.14\n'
          'p00,1,sell,100,0.13\np03,1,sell,700,0.12\np04,1,buy,500,0.17\np05,1,buy,200,0.15\n')
REQUESTS = ('request,buyer,feeder,slot,direction,volume_wh,price_cap,penalty_price\n'
            'dso-f1,dso,F1,0,up,500,0.18,0.25\n'     # the DSO's: ties at the marginal level share it pro rata
            'agg-0,aggregator,,0,up,600,0.20,0.22\n'  # what the DSO left, for the TSO
            'dso-f2,dso,F2,1,down,900,0.15,0.20\n')   # unmet: a shortfall
OFFERS = ('participant,slot,direction,volume_wh,price\n'
          'p00,0,up,400,0.12\np01,0,up,300,0.14\np02,0,up,300,0.14\np03,0,up,500,0.16\np04,0,up,300,0.19\n'
          'p03,1,down,250,0.13\np04,1,down,600,0.15\np05,1,down,100,0.17\n')
# per (participant, slot) the metered net Wh: p00 delivers half of its 'up' activation (an
# under-delivery), p01 more than asked; p02 sends no reading of slot 0 and p03 none of slot 1, where
# it sells 700 Wh and was activated 'down': the missing-reading rule's net (exports nothing) would
# look like a delivery, but without a reading nothing is delivered (the package's unread bit)
READINGS = ('participant,slot,net_wh\n'
            'p00,0,400\np01,0,50\np03,0,-500\np04,0,200\np05,0,-300\n'
            'p00,1,-100\np04,1,1100\np05,1,300\np01,1,0\np02,1,0\n')
COMMON = ('participant', 'trade_amount', 'deviation_amount', 'flex_revenue', 'flex_penalty', 'total_amount')


@pytest.mark.slow
@pytest.mark.deployment
def test_a_day_with_a_dso_flexibility_round_settles_to_the_local_bills(tmp_path, shared_deployment):
    deployment = shared_deployment.running(['fd-e1', 'fd-f1', 'fd-f2', 'fd-e2', 'fd-f3', 'fd-f4'])
    files = {}
    for name, text in (('market.toml', MARKET), ('orders.csv', ORDERS), ('requests.csv', REQUESTS),
                       ('offers.csv', OFFERS), ('readings.csv', READINGS)):
        files[name] = tmp_path / name
        files[name].write_text(text)

    def client(*args, check=True):
        return cli(*args, '--broker', deployment.broker_address, '--keys', deployment.keys, check=check)

    def open_flex(round_id, energy_round, market=files['market.toml'], check=True):
        return client('round', 'open', '--round', round_id, '--flex', files['requests.csv'], '--market', market,
                      '--energy-round', energy_round, '--gate-closure-in', 120, check=check)

    client('round', 'open', '--round', 'fd-e1', '--slots', '0-1', '--market', files['market.toml'],
           '--gate-closure-in', 120, '--readings-deadline-in', 900, '--day', DAY)
    client('round', 'open', '--round', 'fd-e2', '--slots', '0-1', '--market', files['market.toml'],
           '--gate-closure-in', 120, '--day', DAY)  # no readings window: not settled
    assert "6 participants' orders accepted by every node" in client(
        'submit', '--orders', files['orders.csv'], '--round', 'fd-e1').stdout
    closed = client('round', 'close', '--round', 'fd-e1', '--wait', 180, check=False)
    assert closed.returncode == 0 and ': readings;' in closed.stdout, closed.stdout + closed.stderr

    # the DSO's congestion check: the per-feeder planned net positions every node signed, as `clear` has them
    public = tmp_path / 'public'
    got = client('results', '--public', '--round', 'fd-e1', '--out', public)
    assert 'per-zone planned net positions of 2 zones (at least 3 participants each)' in got.stdout, got.stdout
    cli('clear', '--engine', 'plain', '--orders', files['orders.csv'], '--config', files['market.toml'],
        '--out', tmp_path / 'plain', '--quiet', check=True)
    assert (public / 'feeder_positions.csv').read_text() == (tmp_path / 'plain' / 'feeder_positions.csv').read_text()
    assert {(r['feeder'], r['slot'], r['net_wh']) for r in read_rows(public / 'feeder_positions.csv')} == {
        ('F1', '0', '700'), ('F2', '0', '-400'), ('F2', '1', '0')}  # F1's slot 1: p00's order alone, withheld

    open_flex('fd-f1', 'fd-e1')
    status = client('round', 'status', '--round', 'fd-f1').stdout
    assert 'flexibility round (3 requests), delivered in the settlement of fd-e1' in status, status
    for round_id, energy, why in (('fd-f2', 'fd-e1', 'is settled with flexibility round fd-f1 already'),
                                  ('fd-f3', 'fd-e2', 'has no readings window'),
                                  ('fd-f3', 'fd-none', 'the energy round it names is unknown')):
        refused = open_flex(round_id, energy, check=False)
        assert refused.returncode != 0 and why in refused.stderr, (round_id, refused.stderr)
    other = tmp_path / 'other.toml'
    other.write_text(MARKET.replace('network_fee = 0.01', 'network_fee = 0.02'))
    refused = open_flex('fd-f3', 'fd-e1', market=other, check=False)
    assert refused.returncode != 0 and 'another market text' in refused.stderr, refused.stderr
    refused = client('round', 'open', '--round', 'fd-f3', '--slots', '0', '--market', files['market.toml'],
                     '--energy-round', 'fd-e1', '--gate-closure-in', 120, check=False)
    assert refused.returncode == 2 and '--flex' in refused.stderr, refused.stderr

    # the binding is signed: a broker hiding it (clients would settle without the activations) is refused
    trusted = assert_lies_refused(deployment, 'fd-f1', 'energy_round', ('', 'fd-e2'),
                                  'energy round settling it is not the one the nodes signed')
    assert trusted.params.energy_round == 'fd-e1'

    assert "6 participants' offers accepted by every node" in client(
        'flex', 'submit', '--offers', files['offers.csv'], '--round', 'fd-f1').stdout
    closed = client('round', 'close', '--round', 'fd-f1', '--wait', 180, check=False)
    assert closed.returncode == 0 and ': cleared;' in closed.stdout, closed.stdout + closed.stderr
    upload = client('meter', 'submit', '--readings', files['readings.csv'], '--orders', files['orders.csv'],
                    '--day', DAY)
    assert '6 accepted by every node, 0 not' in upload.stdout, upload.stdout
    client('round', 'close', '--round', 'fd-e1')  # the readings deadline: now
    settled = client('round', 'settled', '--round', 'fd-e1', '--wait', 180, check=False)
    assert settled.returncode == 0 and 'settled' in settled.stdout, settled.stdout + settled.stderr
    late = open_flex('fd-f4', 'fd-e1', check=False)  # its positions are settled: no more flexibility for it
    assert late.returncode != 0 and 'is settled' in late.stderr, late.stderr
    erase_the_delivery_as_the_broker(deployment)

    local = tmp_path / 'local'
    cli('flex', 'settle', '--engine', 'plain', '--requests', files['requests.csv'], '--offers', files['offers.csv'],
        '--orders', files['orders.csv'], '--readings', files['readings.csv'], '--config', files['market.toml'],
        '--out', local, check=True)
    expected = read_rows(local / 'bills.csv')
    deliveries = read_rows(local / 'deliveries.csv')
    assert any(int(d['undelivered_wh']) > 0 for d in deliveries), deliveries   # an under-delivery is penalised
    unread = [d for d in deliveries if (d['participant'], d['slot']) == ('p03', '1')]
    assert unread and unread[0]['net_wh'] == '' and unread[0]['delivered_wh'] == '0', unread
    assert any(d['request'] == 'dso-f1' for d in deliveries) and any(d['request'] == 'agg-0' for d in deliveries)
    assert {b['participant'] for b in expected} == {f'p0{i}' for i in range(6)}
    for bill in expected:
        out = tmp_path / f'bill-{bill["participant"]}'
        got = client('results', '--participant', bill['participant'], '--bill', '--round', 'fd-e1',
                     '--orders', files['orders.csv'], '--out', out)
        assert 'flexibility delivered: fd-f1 in fd-e1' in got.stdout, got.stdout
        (row,) = read_rows(out / 'bills.csv')
        assert {k: row[k] for k in COMMON} == {k: bill[k] for k in COMMON}, bill['participant']
    # the operator console: the energy round's released feeders and delivered flexibility, the flexibility
    # round's energy round (from the bodies every node signed)
    broker = BrokerClient(deployment.broker_address, deployment.keys)
    try:
        signed = {r: (broker.public(r), broker.settlement(r) if r == 'fd-e1' else None, broker.status(r))
                  for r in ('fd-e1', 'fd-f1')}
    finally:
        broker.close()
    pages = {}
    for round_id, (public, settlement, state) in signed.items():
        round_ = dataclasses.replace(Round.opened(round_id, state.slots, state.gate_closure_unix_ms, state.market_toml,
                                                  flex_requests=state.flex_requests, energy_round=state.energy_round),
                                     state='cleared', settlement='settled' if settlement else '')
        published = [None if b is None else (b.body, {x.node_index: x.signature for x in b.signatures})
                     for b in (public, settlement)]
        pages[round_id] = webview.round_detail(webview.round_summary(round_, *published))
    assert 'feeder positions released</th><td>2 zones (F1, F2)' in pages['fd-e1'], pages['fd-e1']
    assert 'flexibility delivered</th><td>round fd-f1' in pages['fd-e1'], pages['fd-e1']
    assert 'delivered in</th><td>the settlement of energy round fd-e1' in pages['fd-f1'], pages['fd-f1']

    closed = client('round', 'close', '--round', 'fd-e2', '--wait', 180, check=False)  # leave no round open
    assert closed.returncode == 0 and ': cleared;' in closed.stdout, closed.stdout + closed.stderr


def erase_the_delivery_as_the_broker(deployment):
    """A broker (its own certificate) re-runs the cleared flexibility round at every node, which would
    fail it, then re-settles the energy round, which would settle it without the published
    activations: every node keeps the flexibility round cleared, so the re-settlement delivers it again."""
    import grpc

    from mpc_market.net.tls import secure_channel
    from mpc_market.rpc import market_pb2, market_pb2_grpc
    credentials = grpc.ssl_channel_credentials(read_bytes(deployment.keys, 'ca', 'ca.pem'),
                                               read_bytes(deployment.keys, 'broker', 'broker.key'),
                                               read_bytes(deployment.keys, 'broker', 'broker.pem'))
    broker = BrokerClient(deployment.broker_address, deployment.keys)
    try:
        addresses = list(broker.status('fd-f1').node_addresses)
    finally:
        broker.close()
    stubs = [market_pb2_grpc.NodeStub(secure_channel(a, credentials, f'node{i}')) for i, a in enumerate(addresses)]
    for stub in stubs:
        state = stub.CloseRound(market_pb2.RoundRef(round_id='fd-f1', rerun=True), timeout=10)
        assert state.state == market_pb2.RoundState.CLEARED, state
    for stub in stubs:
        stub.SettleRound(market_pb2.RoundRef(round_id='fd-e1', rerun=True), timeout=10)
    def settled(stub):
        return stub.RoundStatus(market_pb2.RoundRef(round_id='fd-e1'), timeout=10).settlement == \
            market_pb2.RoundState.SETTLED
    for stub in stubs:  # the re-settlement ends settled again, naming the flexibility round it delivered
        wait_for(lambda s=stub: settled(s), 120, 'the re-settlement')
        body = stub.NodeSettlementResults(market_pb2.RoundRef(round_id='fd-e1'), timeout=10).body
        assert '"flex_round":"fd-f1"' in body, body
        assert stub.RoundStatus(market_pb2.RoundRef(round_id='fd-f1'), timeout=10).state == \
            market_pb2.RoundState.CLEARED



def test_the_binding_rules_of_a_flexibility_round():
    """energy_round_problem and delivery_decision as every node applies them to its own store."""
    from mpc_market.net.flexround import delivery_decision, energy_round_problem
    energy = dataclasses.replace(Round.opened('e', [0, 1], 1_000, MARKET, 0, 9_000), state='cleared')

    def problem(gate=2_000, slots=(0,), market=MARKET, bound=None, **changes):
        return energy_round_problem('f', slots, market, gate, dataclasses.replace(energy, **changes), bound)
    assert problem() == ''
    assert 'before the gate of energy round e' in problem(gate=999)   # a baseline changed after an activation
    assert 'after the readings deadline' in problem(gate=9_000)
    assert 'does not deliver slots [2]' in problem(slots=(0, 2))
    assert 'another market text' in problem(market=MARKET + '\n')
    assert 'no readings window' in problem(readings_deadline_ms=0)
    assert 'is settled' in problem(settlement='settled') and 'is settling' in problem(settlement='settling')
    assert 'is failed' in problem(state='failed', final=True) and problem(state='failed') == ''
    assert 'with flexibility round g already' in problem(bound=dataclasses.replace(energy, round_id='g'))
    assert problem(bound=dataclasses.replace(energy, round_id='f')) == ''   # reopening the same round
    assert energy_round_problem('f', (0,), MARKET, 2_000, None, None) == 'the energy round it names is unknown here'

    flex = Round.opened('f', [0], 2_000, MARKET, flex_requests=REQUESTS, energy_round='e')
    decide = {state: delivery_decision(dataclasses.replace(flex, state=state), 3_000)
              for state in ('open', 'closed', 'clearing', 'cleared', 'failed')}
    assert decide == {'open': 'abandon', 'closed': 'abandon', 'clearing': 'wait', 'cleared': 'deliver',
                      'failed': 'wait'}   # a failed one may be rerun: published activations must not be lost
    assert delivery_decision(dataclasses.replace(flex, state='failed', final=True), 3_000) == 'none'
    assert delivery_decision(flex, 1_999) == 'wait' and delivery_decision(None, 0) == 'none'
