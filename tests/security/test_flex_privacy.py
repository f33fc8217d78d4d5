"""Who learns what in the flexibility market (issue 25, SECURITY.md): attacks on the aggregator's
curve (below min_cohort, by differencing), on the public outcome of a request (a lone offerer), on
the nodes' floors (malicious offers), on one node's view of the result shares and, in a
deployment, on another participant's activation. The residual-risk tests show an attack that
works, so the documentation states what does not hold."""

import os
import random
import tempfile
import types
from dataclasses import replace
from decimal import Decimal

import grpc
import numpy as np
import pytest

from mpc_market.market.config import MarketConfig
from mpc_market.market.flex import FlexMarket, FlexOffer, FlexRequest, clear_flex_plain, flex_curve_plain
from mpc_market.mpc import field as ff
from mpc_market.mpc import primitives
from mpc_market.mpc.flex import FlexBook
from mpc_market.mpc.flex_local import clear_flex_in_process, flex_curve_mpc, flex_result, run_on_nodes
from mpc_market.mpc.jobs import JobDir
from mpc_market.rpc import market_pb2

from .test_deployment_attacks import _code, _node_as, _request, _stored_shares
from helpers import cli, read_rows
from malicious import tamper_clients

CONFIG = MarketConfig(Decimal('0.05'), Decimal('0.30'), Decimal('0.01'))  # 26 levels


def offer(p, slot, direction, wh, price):
    return FlexOffer(p, slot, direction, wh, Decimal(price))


def random_offers(rng, n, slots=(0, 1)):
    return [offer(f'h{i}', s, rng.choice(('up', 'down')), rng.randint(1, 5000), f'{rng.uniform(0.03, 0.32):.2f}')
            for i in range(n) for s in slots if rng.random() < 0.6]


# -- the aggregator's view ---------------------------------------------------------------------

def test_a_curve_below_min_cohort_shows_nothing_whatever_the_offers():
    """The aggregator's output for a (slot, direction) with fewer than min_cohort offerers does not
    depend on their offers at all: any other volumes and prices give the same curve, under MPC and
    in the reference; a curve at min_cohort or above opens (the rule is exact, not approximate)."""
    rng = random.Random(25)
    for trial in range(40):
        offers = random_offers(rng, rng.randint(1, 9))
        min_cohort = rng.randint(1, 6)
        curve = flex_curve_plain(CONFIG, offers, min_cohort)
        for (slot, direction), is_open in curve.opened.items():
            members = [o for o in offers if (o.slot, o.direction) == (slot, direction)]
            assert is_open == (len(members) >= min_cohort)
            if not is_open:
                assert not [s for s in curve.steps if (s.slot, s.direction) == (slot, direction)]
        # the attack: change every offer of the withheld curves; the aggregator sees the same bytes
        withheld = {key for key, is_open in curve.opened.items() if not is_open}
        other = [replace(o, volume_wh=rng.randint(1, 5000), price=Decimal(f'{rng.uniform(0.03, 0.32):.2f}'))
                 if (o.slot, o.direction) in withheld else o for o in offers]
        assert flex_curve_plain(CONFIG, other, min_cohort) == curve
        if trial < 4:  # under MPC (one party in process: the same protocol, its opened values)
            assert flex_curve_mpc(CONFIG, other, min_cohort, in_process=True) == curve


def test_an_open_curve_does_not_say_who_offers_what():
    """An open curve is a function of the multiset of (level, volume) of its offers: handing the
    offers of a (slot, direction) to other owners leaves the aggregator's view unchanged."""
    rng = random.Random(7)
    offers = [offer(f'h{i}', 0, 'up', rng.randint(1, 4000), f'{rng.uniform(0.05, 0.20):.2f}') for i in range(8)]
    owners = [o.participant for o in offers]
    rng.shuffle(owners)
    swapped = [replace(o, participant=p) for o, p in zip(offers, owners, strict=True)]
    assert owners != [o.participant for o in offers]
    curve = flex_curve_mpc(CONFIG, offers, 5, in_process=True)
    assert curve.opened[(0, 'up')] and curve.steps
    assert flex_curve_mpc(CONFIG, swapped, 5, in_process=True) == curve == flex_curve_plain(CONFIG, swapped, 5)


def test_residual_risk_differencing_open_curves_reveals_one_offer():
    """What min_cohort does not stop: (a) min_cohort - 1 offerers colluding with the aggregator
    subtract their own offers from an open curve and get the last one's volume and price level;
    (b) two open curves of the same community in two rounds, one household offering in the first
    only, differ by exactly its offer. As for grid statistics (n - 1 colluding meters), the cohort
    rule bounds what one curve shows, not what several curves or colluders do."""
    target = offer('victim', 0, 'up', 1234, '0.11')
    colluders = [offer(f'c{i}', 0, 'up', 500 + i, '0.08') for i in range(4)]

    def at_level(curve):
        volumes, last = {}, 0
        for step in curve.steps:
            volumes[step.level] = step.volume_wh - last
            last = step.volume_wh
        return volumes
    curve = flex_curve_mpc(CONFIG, colluders + [target], 5, in_process=True)
    assert curve.opened[(0, 'up')]
    mine = at_level(flex_curve_plain(CONFIG, colluders, 1))
    theirs = {k: v - mine.get(k, 0) for k, v in at_level(curve).items() if v - mine.get(k, 0)}
    assert theirs == {CONFIG.sell_level(target.price): target.volume_wh}  # (a): the victim's offer
    others = [offer(f'h{i}', 0, 'up', 700 + 13 * i, '0.09') for i in range(5)]
    first = at_level(flex_curve_plain(CONFIG, others + [target], 5))
    second = at_level(flex_curve_plain(CONFIG, others, 5))
    assert {k: v - second.get(k, 0) for k, v in first.items() if v - second.get(k, 0)} == \
        {CONFIG.sell_level(target.price): target.volume_wh}  # (b)


# -- the public outcome of a request -----------------------------------------------------------

def test_residual_risk_a_lone_offerer_is_revealed_by_the_public_outcome():
    """A request's public outcome is an aggregate over the offers it could reach: with one offerer
    on a feeder, an unmet DSO request publishes that offer's volume (procured) and, pay-as-clear,
    its price level (the marginal level); this is inherent to publishing procured volume and price.
    With two offerers only their sum and the marginal level are public: two different splits give
    the same outcome, so the rule hides a household among the others it is aggregated with."""
    lone = (offer('solo', 0, 'up', 1777, '0.13'),)
    request = FlexRequest('d', 'dso', 'F', 0, 'up', 5000, Decimal('0.20'), Decimal(0))
    market = FlexMarket(CONFIG, (request,), lone, {'solo': 'F'})
    secure = clear_flex_in_process(market)
    assert secure.requests == clear_flex_plain(market).requests
    (outcome,) = secure.requests
    assert outcome.procured_wh == 1777 and outcome.shortfall_wh == 5000 - 1777
    assert outcome.level == CONFIG.sell_level(Decimal('0.13'))  # the lone offer, volume and price
    feeders = {'a': 'F', 'b': 'F'}
    split = [(offer('a', 0, 'up', 1000, '0.13'), offer('b', 0, 'up', 777, '0.12')),
             (offer('a', 0, 'up', 300, '0.12'), offer('b', 0, 'up', 1477, '0.13'))]
    outcomes = [clear_flex_in_process(FlexMarket(CONFIG, (request,), pair, feeders)).requests for pair in split]
    assert outcomes[0] == outcomes[1] and outcomes[0][0].procured_wh == 1777


# -- malicious offers --------------------------------------------------------------------------

CHEATS = ('x_huge', 'x_negative', 'x_twoway', 'x_oversize')


def test_malicious_offers_never_reach_a_floor_and_the_rest_clears(monkeypatch):
    """Offers a client can forge only by sharing other vectors than the rule's (energy 2^100 or
    negative at every level of both directions, an up and a down offer at once, more than
    max_order_wh) are excluded, and their values are zeroed before any floor: the party opens
    (test only) every floor input and fails on one not below 2**y_bits, the bound each masked
    opening relies on (else a colluding node could read a ratio through it). The honest offers
    clear exactly as without the cheats, DSO and aggregator alike."""
    # every request procures: the DSO's up unmet, its down a tie shared pro rata, the aggregator's up
    # met at a marginal level, its down unmet
    honest = [offer(p, 0, d, wh, price) for p, d, wh, price in (
        ('h0', 'up', 800, '0.08'), ('h1', 'up', 900, '0.10'), ('h2', 'up', 1200, '0.12'), ('h3', 'up', 700, '0.14'),
        ('h4', 'up', 600, '0.17'), ('h5', 'down', 1000, '0.07'), ('h6', 'down', 500, '0.09'),
        ('h7', 'down', 800, '0.11'), ('h8', 'down', 900, '0.09'), ('h9', 'down', 400, '0.19'))]
    feeders = {f'h{i}': 'F' for i in range(0, 10, 2)} | {'x_huge': 'F', 'x_negative': 'F'}
    requests = (FlexRequest('d-up', 'dso', 'F', 0, 'up', 2500, Decimal('0.15'), Decimal(0)),
                FlexRequest('d-down', 'dso', 'F', 0, 'down', 1200, Decimal('0.18'), Decimal(0)),
                FlexRequest('a-up', 'aggregator', '', 0, 'up', 2000, Decimal('0.20'), Decimal(0)),
                FlexRequest('a-down', 'aggregator', '', 0, 'down', 3000, Decimal('0.20'), Decimal(0)))
    market = FlexMarket(CONFIG, requests, tuple(honest + [offer(c, 0, 'up', 1000, '0.06') for c in CHEATS]), feeders)
    book = FlexBook(market)
    layout, k = book.layout, book.layout.levels

    def tamper(node, rows, data):
        for name in CHEATS:
            i = book.participant_index[name]
            if i not in rows:
                continue
            r = list(rows).index(i)
            if node is None and name == 'x_twoway':
                data[r, 0, k + 3] = 1
                data[r, 0, layout.weighted.start + k + 3] = 1000
            elif node is None and name == 'x_oversize':
                energy = 70000  # max_order_wh 65535; bits and slack made to match
                data[r, 0, layout.weighted.start] = energy
                data[r, 0, layout.bits] = [(energy >> b) & 1 for b in range(layout.energy_bits)]
                data[r, 0, layout.slack] = 0
            elif node is not None and name in ('x_huge', 'x_negative'):
                delta = 1 << 100 if name == 'x_huge' else -5000
                for column in range(layout.weighted.start, layout.weighted.start + 2 * k):
                    value = int(ff.to_ints(data[:, r, 0, column]))
                    data[:, r, 0, column] = ff.from_ints(np.array((value + delta) % ff.MODULUS, dtype=object))
        return data
    tamper_clients(monkeypatch, book, tamper)
    original, checked = primitives.floor_of_ratio_product, []

    async def check_floor(y, f, y_bits, bound):
        opened = await primitives.open_values(y)
        assert all(int(v) < 1 << y_bits for v in np.asarray(opened).reshape(-1)), 'a floor input out of bounds'
        checked.append(np.asarray(opened).size)
        return await original(y, f, y_bits, bound)
    monkeypatch.setattr(primitives, 'floor_of_ratio_product', check_floor)  # flex.py looks it up at each call
    secure = clear_flex_in_process(market, book=book)
    assert sum(checked) > 0  # the floors ran (the check is not vacuous)
    plain = clear_flex_plain(replace(market, offers=tuple(honest)))
    assert secure.excluded == sorted(CHEATS)
    assert secure.requests == plain.requests and all(r.procured_wh for r in plain.requests)
    assert [a for a in secure.activations if a.participant.startswith('h')] == plain.activations
    assert all(a.activated_wh == 0 for a in secure.activations if a.participant.startswith('x'))


# -- one node's view -----------------------------------------------------------------------------

def _node_views(market, runs=1):
    """Clear on 3 node processes, keeping the job: per run (the result, every node's result shares)."""
    book = FlexBook(market)
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as root:
            keep = os.path.join(root, 'job')
            os.makedirs(keep)
            public, values, stats = run_on_nodes(book, book.spec(3, 64), timeout=300, keep=keep)
            shares = [ff.to_ints(np.load(JobDir(keep).node(i).results)) for i in range(3)]
        out.append((flex_result(book, public, values, stats), shares, book))
    return out


def _uniform(values):
    """Field elements indistinguishable from uniform at this sample size: bit frequencies and the
    mean near one half, none small (every result value is below 2^64; a uniform share is with
    probability 2^-63)."""
    values = [int(v) for v in np.asarray(values).reshape(-1)]
    n = len(values)
    ones = sum(bin(v).count('1') for v in values) / (n * ff.MODULUS_BITS)
    mean = sum(v / ff.MODULUS for v in values) / n
    return (all(0 <= v < ff.MODULUS and v >= 1 << 64 for v in values) and abs(ones - 0.5) < 5 / np.sqrt(4 * n * 127)
            and abs(mean - 0.5) < 5 / np.sqrt(12 * n))


@pytest.mark.slow
def test_one_nodes_result_shares_do_not_depend_on_the_activation():
    """The shares of every participant's activation, payment and rates that one node keeps (for
    delivery, and to seal to the owner in a deployment) look uniformly random whether the victim
    is activated or not, differ in every element from run to run of the same market (fresh
    randomness: not a function of the value), and only two nodes together recombine them to the
    owner's values. With 3 nodes (threshold 1) one node's view is independent of the secrets."""
    base = [offer(f'h{i}', 0, 'up', 400 + 50 * i, f'0.{10 + i}') for i in range(6)]
    request = FlexRequest('a', 'aggregator', '', 0, 'up', 1500, Decimal('0.20'), Decimal('0.20'))
    activated = FlexMarket(CONFIG, (request,), tuple(base + [offer('victim', 0, 'up', 900, '0.06')]))
    idle = FlexMarket(CONFIG, (request,), tuple(base + [offer('victim', 0, 'up', 900, '0.29')]))
    (a1, shares1, book), (a2, shares2, _) = _node_views(activated, runs=2)
    ((b1, shares_b, book_b),) = _node_views(idle)
    assert a1 == replace(a2, stats=a1.stats) and a1.requests == clear_flex_plain(activated).requests
    row = {a.participant: a for a in a1.activations}
    assert row['victim'].activated_wh == 900 and {a.participant: a for a in b1.activations}['victim'].activated_wh == 0
    v, vb = book.participant_index['victim'], book_b.participant_index['victim']
    for node in range(3):
        assert _uniform(shares1[node]) and _uniform(shares_b[node])
        assert _uniform(shares1[node][v]) and _uniform(shares_b[node][vb])
        assert (shares1[node] != shares2[node]).all()  # the same market again: every share fresh
    # two nodes' shares recombine to the victim's values; one node's alone are not them
    values, consistent = ff.recombine(shares1, 1)
    assert consistent.all() and int(ff.signed(values)[v, 0, 1]) == 900  # the aggregator's Wh
    assert not any(int(s) == int(x) for s, x in zip(shares1[0][v].reshape(-1), values[v].reshape(-1), strict=True))


# -- a deployment: another participant's activation ------------------------------------------------

MARKET = ('[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\nmax_order_wh = 1000\nzones = true\n'
          'network_fee = 0.01\n\n[zones]\nF1 = ["p00", "p01", "p02"]\n')
REQUESTS = 'request,buyer,feeder,slot,direction,volume_wh,price_cap\nd1,dso,F1,0,up,600,0.18\n'
OFFERS = ('participant,slot,direction,volume_wh,price\n'
          'p00,0,up,400,0.12\np01,0,up,300,0.14\np02,0,up,300,0.14\np03,0,down,200,0.11\n')


@pytest.mark.slow
@pytest.mark.deployment
def test_in_a_flex_round_only_the_owner_reads_its_activation(tmp_path, shared_deployment):
    """Attacks on a flexibility round's private outputs: another participant (or a DSO or the
    operator, holding no participant's key) asking a node for p01's activation is refused with the
    answer an unknown name gets; a node replaying the request p01 sent it at another node is
    refused; a request leaked to a node yields only ciphertext sealed to p01 (no 16-byte piece of
    the stored shares); the broker's state and log hold no offer; p01 itself gets its exact rows."""
    deployment = shared_deployment.running(['fxpriv'])
    for name, text in (('market.toml', MARKET), ('requests.csv', REQUESTS), ('offers.csv', OFFERS)):
        (tmp_path / name).write_text(text)
    args = ('--requests', tmp_path / 'requests.csv', '--offers', tmp_path / 'offers.csv',
            '--config', tmp_path / 'market.toml')
    cli('flex', 'clear', '--engine', 'plain', *args, '--out', tmp_path / 'plain', check=True)

    def client(*argv, check=True):
        return cli(*argv, '--broker', deployment.broker_address, '--keys', deployment.keys, check=check)
    client('round', 'open', '--round', 'fxpriv', '--flex', tmp_path / 'requests.csv', '--market',
           tmp_path / 'market.toml', '--gate-closure-in', 120)
    client('flex', 'submit', '--offers', tmp_path / 'offers.csv', '--round', 'fxpriv')
    closed = client('round', 'close', '--round', 'fxpriv', '--wait', 180, check=False)
    assert closed.returncode == 0 and ': cleared;' in closed.stdout, closed.stdout + closed.stderr
    m = types.SimpleNamespace(broker=deployment.broker_address, keys=deployment.keys, round='fxpriv',
                              deployment=deployment)
    submitter = _node_as(m, 0, 'clients', 'submitter')
    unknown = market_pb2.ResultsRequest()
    unknown.CopyFrom(_request(m, 'p01', 0))
    unknown.participant = 'nobody'
    refused = _code(submitter.FetchResults, unknown)
    assert refused[0] == grpc.StatusCode.UNAUTHENTICATED
    assert _code(submitter.FetchResults, _request(m, 'p01', 0, signer='p02')) == refused  # another participant
    seen_by_node1 = _request(m, 'p01', 1)
    for other in (0, 2):
        assert _code(_node_as(m, other, 'nodes', 'node1').FetchResults, seen_by_node1)[0] == \
            grpc.StatusCode.UNAUTHENTICATED
    reply = _node_as(m, 0, 'nodes', 'node1').FetchResults(_request(m, 'p01', 0), timeout=10)
    plain = _stored_shares(m, 0, 'p01')
    assert reply.status == 'cleared' and len(reply.shares) == len(plain) + 16
    assert not any(plain[i:i + 16] in reply.shares for i in range(0, len(plain) - 16, 16))
    broker_bytes = b''
    for root, _, files in os.walk(os.path.join(deployment.dir, 'broker')):
        for name in files:
            with open(os.path.join(root, name), 'rb') as f:
                broker_bytes += f.read()
    with open(os.path.join(deployment.dir, 'broker.log'), 'rb') as f:
        broker_bytes += f.read()
    for line in OFFERS.splitlines()[1:]:
        assert ','.join(line.split(',')[:4]).encode() not in broker_bytes, line
    client('results', '--participant', 'p01', '--offers', tmp_path / 'offers.csv', '--round', 'fxpriv',
           '--out', tmp_path / 'own')
    assert read_rows(tmp_path / 'own' / 'p01.activations.csv') == \
        [r for r in read_rows(tmp_path / 'plain' / 'activations.csv') if r['participant'] == 'p01']


# -- a meter's package in the delivery ---------------------------------------------------------

def _forged_witness_round(monkeypatch):
    """Worked example 3 with h1 (metered 1800 of a planned 3000, 2000 up activated) forging its
    meter package's deviation witness to claim full delivery (M - B = -2000 beside its true
    reading); (the MPC settlement, the reference without h1's reading)."""
    from mpc_market.market import book as book_module
    from mpc_market.market.book import ReadingLayout
    from mpc_market.mpc.flex_local import delivery_book, settle_flex_mpc
    from tests.mpc.test_flex_delivery import prices, reference, worked_round
    market, orders, readings = worked_round()
    energy = delivery_book(market, orders, readings)
    layout, cheat, column = ReadingLayout.for_config(market.config), energy.participant_index['h1'], \
        energy.slot_index[0]

    encode = book_module.encode_readings

    def forged(the_book, net_of, rows, **kwargs):  # h1's meter client, before sharing
        data = encode(the_book, net_of, rows, **kwargs)
        if cheat in list(rows):
            r = list(rows).index(cheat)
            data[r, column, 0] = 1  # M - B < 0 ...
            data[r, column, layout.dev_bits] = [(2000 >> b) & 1 for b in range(layout.deviation_bits)]  # ... = -2000
        return data
    monkeypatch.setattr(book_module, 'encode_readings', forged)  # delivery_packages looks it up at each call
    secure = settle_flex_mpc(market, orders, readings, prices(market.config, orders), in_process=True)
    return secure, reference(market, orders, {k: v for k, v in readings.items() if k[0] != 'h1'})


def test_a_forged_delivery_witness_is_excluded_and_the_missing_reading_rule_applies(monkeypatch):
    """The nodes' check of h1's forged witness against its reading fails, its package is
    excluded and it is settled as without a reading (nothing delivered, the full penalty, the
    missing-reading deviation): the forgery costs it more than the truth (0.18000 paid, 0.16000
    penalty). Every computed figure of everyone equals the reference's without h1's reading (the
    net_wh column, which the owner's side fills in from its own file: the next test)."""
    (result, settled), (plain_result, plain_settled) = _forged_witness_round(monkeypatch)
    assert (result.requests, result.activations) == (plain_result.requests, plain_result.activations)
    for rows, blank in (('deliveries', None), ('imbalances', 0)):
        assert [replace(r, net_wh=blank) for r in getattr(settled, rows)] == \
            [replace(r, net_wh=blank) for r in getattr(plain_settled, rows)], rows
    assert settled.slots == plain_settled.slots
    h1 = next(d for d in settled.deliveries if d.participant == 'h1')
    assert (h1.delivered_wh, h1.payment, h1.penalty) == (0, 0, 2000 * 20)


def test_an_excluded_meter_package_shows_as_no_reading_in_the_owners_rows(monkeypatch):
    (_, settled), (_, plain_settled) = _forged_witness_round(monkeypatch)
    assert settled == plain_settled
