"""Suite `scenarios`: the four deployment scenarios end to end over gRPC and TLS, each with the
leakage table its instrumentation produces.

Every scenario runs the same code (broker + 3 nodes + clients on this machine, mutual TLS
everywhere, MPyC links included); what changes is who runs what:

- S1 direct peers: the peers draw 3 of themselves by the committee lottery to run the nodes;
  the first of them also coordinates; every peer submits its own orders.
- S2 direct customers: two representatives submit for their clients and run two nodes, the
  community runs the third; the first representative coordinates.
- S3 indirect customers: the representatives submit for their clients; a broker organisation
  coordinates; the nodes are run by the representatives and an independent operator.
- S4 indirect peers: every prosumer submits its own orders; a broker coordinates; three
  independent operators run the nodes.

The node and broker processes run with benchmarks/instrument on PYTHONPATH, which records every
gRPC request they receive. After the energy round a flexibility round runs on the same deployment
(`round open --flex`: a DSO request per feeder and slot, the aggregator's per slot and direction;
every participant, or its representative, submits its offers with `flex submit`). After each
round every participant (or its representative) fetches its own results, which must equal the
plaintext reference, and benchmarks/leakage.py scans every actor's files for identities, orders,
offers, activations and share packages the scenario does not allow it.
"""

import atexit
import csv
import os
import random
import shutil
import tempfile
import time

from mpc_market.common import keys
from mpc_market.market.generate import community
from mpc_market.mpc.committee import draw
from mpc_market.net.client import BrokerClient
from mpc_market.net.localdeploy import LocalDeployment

from .common import instrumented
from .deployment import node_costs, wait_published
from .forks import CliProcesses
from .leakage import Actor, scan, secrets_of
from .suite import figure, profile_day

NAME, TITLE = 'scenarios', 'Deployment scenarios S1-S4 end to end, with the leakage each actor shows'
COLUMNS = [('scenario', 'scenario'), ('actor', 'actor'), ('roles', 'roles'), ('KiB scanned', 'kib_scanned'),
           ('identities held', 'identities_held'), ('order owners held', 'order_owners_held'),
           ('share packages held', 'share_packages_held'), ('offer owners held', 'offer_owners_held'),
           ('activation owners held', 'activation_owners_held'), ('leaks', 'leak_list'), ('round s', 'seconds'),
           ('= reference', 'exact')]
MARKET = '[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
SCENARIOS = {
    'S1': 'direct peers: a lottery committee of peers runs the nodes, one coordinates, each peer submits',
    'S2': 'direct customers: 2 representatives submit for clients and run nodes with the community; no broker',
    'S3': 'indirect customers: representatives submit; a broker coordinates; representatives + an operator run nodes',
    'S4': 'indirect peers: prosumers submit their own; a broker coordinates; independent operators run the nodes',
}


FEEDERS = 2  # the flexibility round's feeders (its market's [zones]): participants dealt round-robin


def feeder_map(names):
    """The flexibility round's public feeder map: every third participant on none (it can serve only
    the aggregator, and its name stays as private as in the energy round), the others dealt to F0, F1."""
    mapped = [n for k, n in enumerate(names) if k % 3 != 2]
    return {f'F{k}': mapped[k::FEEDERS] for k in range(FEEDERS) if mapped[k::FEEDERS]}


def flex_market_text(names):
    """The flexibility round's market: the energy market's grid and the feeders as its [zones]
    (public: a participant's feeder is its grid connection, so the map's names are public too)."""
    feeders = feeder_map(names)
    lines = [f'{f} = [{", ".join(chr(34) + n + chr(34) for n in members)}]\n' for f, members in feeders.items()]
    return MARKET + 'zones = true\nnetwork_fee = 0.001\n\n[zones]\n' + ''.join(lines)


def flex_of(names, slots, seed):
    """Seeded offers (participant, slot, direction, volume_wh, price) of most participant-slots, and
    requests reaching a part of them: a DSO 'up' request per feeder and slot, the aggregator's per
    slot and direction (so both buyers activate someone, and some offers stay unactivated)."""
    rng = random.Random(seed)
    offers = [(p, s, rng.choice(('up', 'down')), rng.randint(50, 3000), f'{rng.uniform(0.05, 0.13):.3f}')
              for p in names for s in slots if rng.random() < 0.8]
    requests = ['request,buyer,feeder,slot,direction,volume_wh,price_cap']
    for s in slots:
        for feeder in feeder_map(names):
            requests.append(f'dso-{feeder}-{s},dso,{feeder},{s},up,1500,0.10')
        requests += [f'agg-{s}-{d},aggregator,,{s},{d},2500,0.12' for d in ('up', 'down')]
    return offers, '\n'.join(requests) + '\n'


def write_offers(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('participant,slot,direction,volume_wh,price\n' + ''.join(','.join(map(str, r)) + '\n' for r in rows))


def orders_of(participants, slots, seed, day=None):
    """A generated community, renamed so every name is long enough to be unambiguous in a scan."""
    raw, _ = community(participants, slots, seed, with_readings=True, profile_day=day)
    return [(f'member-{o["participant"]}', o['slot'], o['side'], o['energy_wh'], o['limit_price']) for o in raw]


def write_orders(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write('participant,slot,side,energy_wh,limit_price\n' + ''.join(','.join(map(str, r)) + '\n' for r in rows))


def plan(scenario, participants, representatives):
    """The scenario's organisations: [(name, roles, participants, nodes, coordinator, certificate)]."""
    if scenario in ('S1', 'S4'):
        if scenario == 'S1':
            committee = draw('scenario-S1', participants, 3)['committee']
            runs = {p: i for i, p in enumerate(committee)}
        else:
            committee, runs = [], {}
        plan_ = [(p, ['peer'] + ([f'node{runs[p]}'] + (['coordinator'] if runs[p] == 0 else []) if p in runs else []),
                  {p}, {runs[p]} if p in runs else set(), p in runs and runs[p] == 0, f'peer-{k}')
                 for k, p in enumerate(participants)]
        if scenario == 'S4':
            plan_ += [(f'operator-{c}', [f'node{i}'], set(), {i}, False, None) for i, c in enumerate('abc')]
            plan_.append(('broker-org', ['coordinator'], set(), set(), True, None))
        return plan_
    clients = [participants[k::representatives] for k in range(representatives)]
    plan_ = [(f'rep{k}', ['representative'] + ([f'node{k}'] if k < 3 else [])
              + (['coordinator'] if k == 0 and scenario == 'S2' else []),
              set(c), {k} if k < 3 else set(), k == 0 and scenario == 'S2', f'rep{k}') for k, c in enumerate(clients)]
    for i in range(representatives, 3):
        plan_.append(('community' if scenario == 'S2' else f'operator-{i}', [f'node{i}'], set(), {i}, False, None))
    if scenario == 'S3':
        plan_.append(('broker-org', ['coordinator'], set(), set(), True, None))
    return plan_


CLI_TIMEOUT = 120  # seconds a command may take (a results fetch waits on no round: seconds at most)
_FORKS: list[CliProcesses] = []  # the run's fork server, started by the first command


def cli(*args, out=None, timeout=CLI_TIMEOUT):
    """One `mpc-market` command as the actor's own process (a fork of the run's fork server, which
    imported the command line once: ~110 commands' imports were most of a quick run); its output is
    part of what the actor holds.

    Args:
        args: the command's arguments.
        out: the actor's file its stdout and stderr are appended to.
        timeout: seconds before the command is killed.

    Returns:
        its stdout.

    Raises:
        RuntimeError: the command exited non-zero or was killed at the timeout (its stdout and stderr).
    """
    if not _FORKS:
        _FORKS.append(CliProcesses())
    proc = _FORKS[0].run({0: args}, os.getcwd(), at_once=1, timeout=timeout)[0]
    if out:
        with open(out, 'a') as f:
            f.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        killed = f' (killed after {timeout} s)' if proc.returncode == -9 else ''
        raise RuntimeError(f'mpc-market {args[0]} failed{killed}: {proc.stdout}{proc.stderr}')
    return proc.stdout


def stop_forks():
    """End the run's fork server, if one was started (the next command starts another)."""
    while _FORKS:
        _FORKS.pop().stop()


atexit.register(stop_forks)  # run() stops it; this covers run_scenario called on its own (tests/test_leakage.py)


def run_scenario(scenario, params, seed, work):
    """Run one scenario's round in work/SCENARIO (left for the caller to scan and remove); return
    (actors, secrets, (round seconds, bytes sent per node, peak MB per node), exact)."""
    rows = orders_of(params['participants'], params['slots'], seed, profile_day(params))
    names = sorted({r[0] for r in rows})
    directory = os.path.join(work, scenario)
    dep = LocalDeployment(os.path.join(directory, 'dep')).create(names)
    organisations = plan(scenario, names, params['representatives'])
    for _, _, _, _, _, certificate in organisations:
        if certificate:
            keys.create_client(dep.keys, certificate)
    market = os.path.join(directory, 'market.toml')
    with open(market, 'w') as f:
        f.write(MARKET)
    reference = os.path.join(directory, 'reference')
    all_orders = os.path.join(directory, 'orders.csv')
    write_orders(all_orders, rows)
    cli('clear', '--engine', 'plain', '--orders', all_orders, '--config', market, '--out', reference, '--quiet')
    slots = sorted({r[1] for r in rows})
    offers, requests_text = flex_of(names, slots, seed)
    flex_market, flex_requests, all_offers = (os.path.join(directory, n) for n in
                                              ('flex-market.toml', 'requests.csv', 'offers.csv'))
    with open(flex_market, 'w') as f:
        f.write(flex_market_text(names))
    with open(flex_requests, 'w') as f:
        f.write(requests_text)
    write_offers(all_offers, offers)
    flex_reference = os.path.join(directory, 'flex-reference')
    cli('flex', 'clear', '--engine', 'plain', '--requests', flex_requests, '--offers', all_offers,
        '--config', flex_market, '--out', flex_reference)
    activations = _records(os.path.join(flex_reference, 'activations.csv'))
    with instrumented(MPC_MARKET_RECORD='1'):
        dep.start(timeout=60)  # node and broker processes record what they receive
    actors, certificates = [], {}
    try:
        broker = ['--broker', dep.broker_address, '--keys', dep.keys]
        cli('round', 'open', *broker, '--round', 'r1', '--slots', ','.join(map(str, slots)), '--market', market,
            '--gate-closure-in', 600)
        cli('round', 'open', *broker, '--round', 'f1', '--flex', flex_requests, '--market', flex_market,
            '--gate-closure-in', 600)
        for name, roles, members, nodes, coordinator, certificate in organisations:
            home = os.path.join(directory, 'actors', name)
            os.makedirs(home)
            actor = Actor(name, roles, [home], members, nodes, coordinator)
            actor.paths += [p for i in nodes for p in (os.path.join(dep.dir, f'node{i}'), dep.node_config(i),
                                                       os.path.join(dep.dir, f'node{i}.log'),
                                                       os.path.join(dep.dir, f'node{i}.received'))]
            if coordinator:
                actor.paths += [os.path.join(dep.dir, n) for n in ('broker', 'broker.toml', 'broker.log',
                                                                   'broker.received')]
            actors.append(actor)
            certificates[name] = certificate
            if members:
                own = os.path.join(home, 'orders.csv')
                write_orders(own, [r for r in rows if r[0] in members])
                cli('submit', *broker, '--client', certificate, '--round', 'r1', '--orders', own,
                    out=os.path.join(home, 'commands.txt'))
                own_offers = os.path.join(home, 'offers.csv')
                write_offers(own_offers, [o for o in offers if o[0] in members])
                if any(o[0] in members for o in offers):
                    cli('flex', 'submit', *broker, '--client', certificate, '--round', 'f1', '--offers', own_offers,
                        out=os.path.join(home, 'commands.txt'))
        started = time.perf_counter()
        BrokerClient(dep.broker_address, dep.keys, 'operator').close_round('r1')
        wait_published(dep, 'r1', settlement=False)
        seconds = time.perf_counter() - started
        sent, peak, _ = node_costs(dep, 'r1')
        exact = True
        for actor in actors:
            home = actor.paths[0]
            for p in sorted(actor.participants):
                cli('results', *broker, '--client', certificates[actor.name],
                    '--round', 'r1', '--participant', p, '--orders', os.path.join(home, 'orders.csv'),
                    '--out', os.path.join(home, 'results'), out=os.path.join(home, 'commands.txt'))
                exact &= _rows(os.path.join(home, 'results', f'{p}.csv')) == [
                    r for r in _rows(os.path.join(reference, 'participants.csv')) if r.startswith(p + ',')]
            cli('results', *broker, '--client', 'operator', '--public', '--round', 'r1', '--out',
                os.path.join(home, 'public'))
            exact &= _rows(os.path.join(home, 'public', 'public.csv')) == _rows(os.path.join(reference, 'public.csv'))
        exact &= flex_round(dep, broker, actors, certificates, flex_reference, {o[0] for o in offers})
    finally:
        dep.stop()
    secrets = secrets_of(rows, [os.path.join(dep.dir, f'node{i}') for i in range(3)], offers, activations,
                         public_names={n for members in feeder_map(names).values() for n in members})
    return actors, secrets, (seconds, sent, peak), exact


def flex_round(dep, broker, actors, certificates, reference, offering):
    """Close the flexibility round f1 (its offers submitted), wait for its signed outcome and fetch
    every offering participant's activations and the public outcome as each actor would; True when
    all of them equal `flex clear --engine plain`'s."""
    BrokerClient(dep.broker_address, dep.keys, 'operator').close_round('f1')
    wait_published(dep, 'f1', settlement=False)
    exact = True
    for actor in actors:
        home = actor.paths[0]
        for p in sorted(actor.participants & offering):
            cli('results', *broker, '--client', certificates[actor.name], '--round', 'f1', '--participant', p,
                '--offers', os.path.join(home, 'offers.csv'), '--out', os.path.join(home, 'flex-results'),
                out=os.path.join(home, 'commands.txt'))
            own = os.path.join(home, 'flex-results', f'{p}.activations.csv')
            exact &= _rows(own) == [r for r in _rows(os.path.join(reference, 'activations.csv'))
                                    if r.startswith(p + ',')]
        cli('results', *broker, '--client', 'operator', '--public', '--round', 'f1', '--out',
            os.path.join(home, 'flex-public'))
        exact &= _rows(os.path.join(home, 'flex-public', 'requests.csv')) == \
            _rows(os.path.join(reference, 'requests.csv'))
    return exact


def _rows(path):
    with open(path) as f:
        return f.read().splitlines()[1:]


def _records(path):
    """The rows of a CSV file as tuples of its fields (the header left out)."""
    with open(path, newline='') as f:
        return [tuple(r) for r in list(csv.reader(f))[1:]]


def run(params, seed):
    """Run every scenario of params; the run's fork server ends with it.

    Args:
        params: the preset's parameters.
        seed: the communities' seed.

    Returns:
        (rows, notes) of the suite's table.

    Raises:
        AssertionError: the leakage scan found a leak.
    """
    try:
        return _run(params, seed)
    finally:
        stop_forks()


def _run(params, seed):
    rows, notes = [], []
    for scenario in params['scenarios']:
        work = tempfile.mkdtemp(prefix=f'mpc-market-{scenario}-')
        try:
            actors, secrets, (seconds, sent, peak), exact = run_scenario(scenario, params, seed, work)
            table = scan(actors, secrets)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        leaks = sum(len(r['leaks']) for r in table)
        print(f'  {scenario}: round {seconds:.2f} s, exact {exact}, {len(table)} actors scanned, {leaks} leaks',
              flush=True)
        for r in _summarised(table):
            rows.append({'scenario': scenario, 'seconds': round(seconds, 2), 'bytes_per_node': sent,
                         'peak_rss_mb_per_node': peak, 'exact': exact, **r})
        notes.append(f'{scenario}: {SCENARIOS[scenario]}.')
    notes += ['identities held: participants whose name is anywhere in the actor\'s files (nodes must know who '
              'submitted; a peer or representative knows itself and its clients; anyone else none but the names of '
              'the flexibility round\'s public feeder map, which leaves every third participant out).',
              'order owners held: participants with an order (participant,slot,side,energy_wh) in the actor\'s files; '
              'allowed only for the participant itself and its representative.',
              'share packages held: (participant, node) share packages or result shares found in the clear; allowed '
              'only at the node that holds them (orders and flexibility offers alike).',
              'offer owners held / activation owners held: participants with a flexibility offer '
              '(participant,slot,direction,volume_wh) or a row of its activations.csv (activation and payment) in '
              'the actor\'s files, from the flexibility round run after the energy round; allowed only for the '
              'participant itself and its representative.',
              'leaks: anything found beyond what the scenario allows; the suite fails on any.']
    if any(r['leak_list'] for r in rows):
        raise AssertionError('leakage scan: ' + '; '.join(f'{r["scenario"]} {r["actor"]}: {r["leak_list"]}'
                                                           for r in rows if r['leak_list']))
    return rows, notes


def _summarised(table):
    """Peers and representatives with the same role and findings collapse into one row ('3 peers')."""
    out, groups = [], {}
    for r in table:
        r = dict(r, kib_scanned=round(r.pop('bytes_scanned') / 1024, 1), leak_list='; '.join(r.pop('leaks')))
        if r['roles'] in ('peer', 'representative') and not r['leak_list']:
            key = (r['roles'], r['identities_held'], r['order_owners_held'], r['share_packages_held'],
                   r['offer_owners_held'], r['activation_owners_held'])
            groups.setdefault(key, []).append(r)
        else:
            out.append(r)
    for (roles, *_), members in groups.items():
        first = members[0]
        out.append(dict(first, actor=first['actor'] if len(members) == 1 else f'{len(members)} x {roles}',
                        kib_scanned=max(m['kib_scanned'] for m in members)))
    return out


# who runs what, short enough for a tick label under each bar (SCENARIOS says it in full)
SHORT = {'S1': 'direct peers\n(peers run the nodes)', 'S2': 'direct customers\n(representatives\' nodes)',
         'S3': 'indirect customers\n(broker + operator)', 'S4': 'indirect peers\n(broker + 3 operators)'}


def notes(rows):
    """What S1-S4 are (derived at report time: every regenerated report defines them)."""
    return ['S1-S4: the deployment scenarios of the product brief, the same code each; who submits, who coordinates '
            'and who runs the three nodes is all that changes (the notes below say it per scenario).']


def figures(rows, directory):
    fig = figure(7, 4.2)
    axis = fig.subplots()
    scenarios = list(dict.fromkeys(r['scenario'] for r in rows))
    seconds = [next(r['seconds'] for r in rows if r['scenario'] == s) for s in scenarios]
    bars = axis.bar([f'{s}\n{SHORT.get(s, "")}' for s in scenarios], seconds, color='#4c72b0')
    axis.bar_label(bars, labels=[f'{v:.2f} s' for v in seconds], padding=2, fontsize=9)
    axis.set_ylim(0, max(seconds) * 1.15)
    axis.tick_params(axis='x', labelsize=8)
    axis.set_ylabel('round latency (s)')
    axis.set_title('Gate closure to node-signed public results, over gRPC + mutual TLS\n'
                   'each round equal to the plaintext reference', fontsize=10)
    fig.tight_layout()
    path = os.path.join(directory, 'scenarios.png')
    fig.savefig(path)
    return [('round latency per scenario (S1 direct peers, S2 direct customers, S3 indirect customers, '
             'S4 indirect peers)', path)]
