"""Flexibility rounds in a deployment (issue 25): `round open --flex REQUESTS.csv` binds the public
requests into the parameters every node signs, `flex submit` shares the offers like orders, the
nodes clear them with the MPC 'flex' mechanism, and the signed public outcomes and every
participant's activations equal `mpc-market flex clear --engine plain` on the same files. A broker
that shows clients other requests than the nodes signed (or hides them) is refused."""

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mpc_market.net import metrics, webview
from mpc_market.net.broker import BrokerStore
from mpc_market.net.client import BrokerClient
from mpc_market.net.flexround import round_market
from mpc_market.net.store import Round
from mpc_market.rpc import market_pb2

from ..helpers import assert_lies_refused, cli, read_rows


def metrics_registry(store):
    registry = CollectorRegistry()
    metrics.watch_store(store, rounds=True, registry=registry)
    return registry

MARKET = ('[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\nzones = true\n'
          'network_fee = 0.01\n\n[zones]\nF1 = ["p00", "p01", "p02"]\nF2 = ["p03", "p04", "p05"]\n')
REQUESTS = ('request,buyer,feeder,slot,direction,volume_wh,price_cap\n'
            'dso-f1,dso,F1,0,up,700,0.18\n'       # ties at the marginal level: the pro-rata floor
            'agg-0,aggregator,,0,up,900,0.18\n'   # the offers the DSO did not reach; p04's 0.19 is above
            # every cap, so the round's offers are encoded on 9 of the band's 11 levels (FlexMarket.levels)
            'dso-f2,dso,F2,1,down,5000,0.15\n')   # unmet: a shortfall
OFFERS = ('participant,slot,direction,volume_wh,price\n'
          'p00,0,up,400,0.12\np01,0,up,300,0.14\np02,0,up,300,0.14\np03,0,up,500,0.16\np04,0,up,1000,0.19\n'
          'p05,0,down,200,0.11\np03,1,down,250,0.13\np04,1,down,600,0.15\np05,1,down,100,0.17\n')


@pytest.mark.slow
@pytest.mark.deployment
def test_flex_round_equals_the_local_reference_and_lying_brokers_are_refused(tmp_path, shared_deployment):
    deployment = shared_deployment.running(['fx1'])
    paths = {name: tmp_path / name for name in ('market.toml', 'requests.csv', 'offers.csv')}
    for name, text in (('market.toml', MARKET), ('requests.csv', REQUESTS), ('offers.csv', OFFERS)):
        paths[name].write_text(text)
    cli('flex', 'clear', '--engine', 'plain', '--requests', paths['requests.csv'], '--offers', paths['offers.csv'],
        '--config', paths['market.toml'], '--out', tmp_path / 'plain', check=True)
    plain = read_rows(tmp_path / 'plain' / 'activations.csv')
    assert {r['request'] for r in plain} >= {'dso-f1', 'agg-0', 'dso-f2'}, plain  # every stage activates someone
    assert round_market('fx1', MARKET, REQUESTS).levels == 9   # the packages below carry 9 of 11 levels

    def client(*args, check=True):
        return cli(*args, '--broker', deployment.broker_address, '--keys', deployment.keys, check=check)
    client('round', 'open', '--round', 'fx1', '--flex', paths['requests.csv'], '--market', paths['market.toml'],
           '--gate-closure-in', 120)
    listed = [line for line in client('round', 'list').stdout.splitlines() if line.startswith('fx1 ')]
    assert len(listed) == 1 and ' flex (3 req) ' in listed[0], listed
    assert 'flexibility round (3 requests)' in client('round', 'status', '--round', 'fx1').stdout

    # orders into a flexibility round are refused before anything is sent
    orders = tmp_path / 'orders.csv'
    orders.write_text('participant,slot,side,energy_wh,limit_price\np00,0,buy,10,0.15\n')
    refused = client('submit', '--orders', orders, '--round', 'fx1', check=False)
    assert refused.returncode != 0 and 'flexibility round' in refused.stderr, refused.stderr

    # a lying broker: other requests than the nodes signed, or none (shown as an energy round)
    trusted = assert_lies_refused(deployment, 'fx1', 'flex_requests', (REQUESTS.replace('5000', '50'), ''),
                                  'flexibility requests are not the ones the nodes signed')
    assert trusted.kind == 'flex'

    submitted = client('flex', 'submit', '--offers', paths['offers.csv'], '--round', 'fx1')
    assert "6 participants' offers accepted by every node" in submitted.stdout, submitted.stdout
    closed = client('round', 'close', '--round', 'fx1', '--wait', 180, check=False)
    assert closed.returncode == 0 and ': cleared;' in closed.stdout, closed.stdout + closed.stderr

    out = tmp_path / 'results'
    client('results', '--public', '--round', 'fx1', '--out', out)
    assert (out / 'requests.csv').read_text() == (tmp_path / 'plain' / 'requests.csv').read_text()
    for p in sorted({r['participant'] for r in plain}):
        client('results', '--participant', p, '--offers', paths['offers.csv'], '--round', 'fx1', '--out', out)
        assert read_rows(out / f'{p}.activations.csv') == [r for r in plain if r['participant'] == p], p

    # the operator console lists it as a flexibility round with its signed per-request outcome
    broker = BrokerClient(deployment.broker_address, deployment.keys)
    try:
        signed = broker.public('fx1')
        state = broker.status('fx1')
    finally:
        broker.close()
    round_ = Round.opened('fx1', state.slots, state.gate_closure_unix_ms, state.market_toml,
                          flex_requests=state.flex_requests)
    summary = webview.round_summary(dataclasses.replace(round_, state='cleared'),
                                    (signed.body, {s.node_index: s.signature for s in signed.signatures}))
    assert summary['kind'] == 'flex' and summary['results']['kind'] == 'flex'
    table = webview.rounds_table({'rounds': [summary]})
    assert '<td>flexibility</td>' in table, table
    detail = webview.round_detail(summary)
    outcome = {r['request']: r for r in read_rows(tmp_path / 'plain' / 'requests.csv')}
    assert all(f'<td>{r}</td>' in detail for r in outcome) and 'shortfall kWh' in detail, detail


@pytest.mark.slow
@pytest.mark.deployment
def test_a_pay_as_bid_market_pays_every_activation_its_own_price(tmp_path, shared_deployment):
    """flex_pricing = "pay-as-bid" in the market file (whose hash every node signs) prices the
    deployment's activations as `flex clear --engine plain` does on the same files."""
    deployment = shared_deployment.running(['fx2'])
    market = tmp_path / 'market.toml'
    market.write_text(MARKET.replace('network_fee = 0.01\n', 'network_fee = 0.01\nflex_pricing = "pay-as-bid"\n'))
    (tmp_path / 'requests.csv').write_text(REQUESTS)
    (tmp_path / 'offers.csv').write_text(OFFERS)
    common = ('--requests', tmp_path / 'requests.csv', '--offers', tmp_path / 'offers.csv', '--config', market)
    cli('flex', 'clear', '--engine', 'plain', *common, '--out', tmp_path / 'plain', check=True)
    plain = read_rows(tmp_path / 'plain' / 'activations.csv')
    (tmp_path / 'clear.toml').write_text(MARKET)
    cli('flex', 'clear', '--engine', 'plain', *common[:4], '--config', tmp_path / 'clear.toml', '--out',
        tmp_path / 'clear', check=True)
    assert plain != read_rows(tmp_path / 'clear' / 'activations.csv')  # the pricing changes some payments

    def client(*args, check=True):
        return cli(*args, '--broker', deployment.broker_address, '--keys', deployment.keys, check=check)
    client('round', 'open', '--round', 'fx2', '--flex', tmp_path / 'requests.csv', '--market', market,
           '--gate-closure-in', 120)
    client('flex', 'submit', '--offers', tmp_path / 'offers.csv', '--round', 'fx2')
    closed = client('round', 'close', '--round', 'fx2', '--wait', 180, check=False)
    assert closed.returncode == 0 and ': cleared;' in closed.stdout, closed.stdout + closed.stderr
    out = tmp_path / 'results'
    for p in sorted({r['participant'] for r in plain}):
        client('results', '--participant', p, '--offers', tmp_path / 'offers.csv', '--round', 'fx2', '--out', out)
        assert read_rows(out / f'{p}.activations.csv') == [r for r in plain if r['participant'] == p], p


def test_metrics_count_flexibility_rounds(tmp_path):
    """/metrics: mpc_market_rounds counts every round, mpc_market_flex_rounds the flexibility rounds."""
    store = BrokerStore(str(tmp_path / 'broker.db'))
    try:
        for round_id, requests in (('e1', ''), ('f1', REQUESTS)):
            spec = market_pb2.RoundSpec(round_id=round_id, slots=[0, 1], gate_closure_unix_ms=1, market_toml=MARKET,
                                        flex_requests=requests)
            store.add(spec, '', {})
        text = generate_latest(metrics_registry(store)).decode()
    finally:
        store.close()
    assert 'mpc_market_rounds{phase="open"} 2.0' in text and 'mpc_market_flex_rounds{phase="open"} 1.0' in text, text
