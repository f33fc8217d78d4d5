"""The deployment harness of the deployment, latency and scenarios suites: broker + 3 node
processes over mutual TLS on this machine.

run: submission throughput (participants' orders accepted by every node per second, from several
concurrent client processes, each a representative submitting batches; and for the smallest size
also one order per request from many threads; each representative with its own client
certificate, as parties/README.md advises) and round latency (CloseRound at the broker -> signed
public results available at the broker), with an optional added latency between the nodes (a TCP
delay proxy on the MPyC links; one-way delay). Every round is checked against the plaintext
reference (public results, and a sample of participants' own results reconstructed by
`mpc_market.net.client`).

run_settlement: orders, clearing, then every participant's meter reading over gRPC (`mpc-market
meter submit` from several client processes, batched): readings accepted by every node per
second, and close of the readings window -> signed public settlement at the broker (the second MPC
session). In the same run, the local settlement of the same data as a second session
(`settle_mpc(sessions=2)`): its wall time from node start-up to reconstructed results, and its MPC
settlement phase alone. A sample of bills is checked against the plaintext reference.
"""

import os
import random
import shutil
import subprocess
import sys
import time

from mpc_market.common import keys
from mpc_market.market.book import Book
from mpc_market.market.config import load_config
from mpc_market.market.generate import write_community
from mpc_market.market.orders import load_orders
from mpc_market.market.output import participant_table, public_table
from mpc_market.market.plain import clear_plain
from mpc_market.net.client import BrokerClient, fetch_own_results, fetch_public, own_order_rows
from mpc_market.net.localdeploy import LocalDeployment
from mpc_market.rpc import market_pb2


def split_orders(orders_path, parts, out_dir):
    """Split a CSV whose first column is the participant into parts by participant (sorted, k::parts)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(orders_path) as f:
        header, *lines = f.read().splitlines()
    by_participant = {}
    for line in lines:
        by_participant.setdefault(line.split(',', 1)[0], []).append(line)
    names = sorted(by_participant)
    paths = []
    for k in range(parts):
        path = os.path.join(out_dir, f'orders-part{k}.csv')
        with open(path, 'w') as f:
            f.write('\n'.join([header] + [ln for n in names[k::parts] for ln in by_participant[n]]) + '\n')
        paths.append(path)
    return paths


def submit(deployment, round_id, paths, batch, workers):
    """Run one `mpc-market submit` per path concurrently; seconds from launch to the last done."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, '-m', 'mpc_market', 'submit', '--broker', deployment.broker_address,
                               '--keys', deployment.keys, '--round', round_id, '--orders', p, '--batch', str(batch),
                               '--workers', str(workers), '--client', f'rep{k}'],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, p in enumerate(paths)]
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f'submit failed: {out}{err}')
    return time.perf_counter() - started


def wait_published(deployment, round_id, settlement):
    """Wait until the broker holds the node-signed public results (or settlement) of the round.

    Polls the broker's own store (no node is asked) as a plain client, so the measurement does not
    load the nodes; the round's status (which asks every node) only every 2 s, to stop on failure."""
    broker = BrokerClient(deployment.broker_address, deployment.keys)
    checked = time.monotonic()
    try:
        while True:
            try:
                (broker.settlement if settlement else broker.public)(round_id)
                return
            except Exception:  # noqa: BLE001 - not yet published
                if time.monotonic() - checked > 2:
                    checked, state = time.monotonic(), broker.status(round_id)
                    failed, attempts, reason = ((state.settlement == market_pb2.RoundState.SETTLE_FAILED,
                                                 state.settle_attempts, state.settle_reason) if settlement else
                                                (state.state == market_pb2.RoundState.FAILED, state.attempts,
                                                 state.reason))
                    if failed and attempts >= 5:
                        raise RuntimeError(reason) from None
                time.sleep(0.05)
    finally:
        broker.close()


def node_costs(deployment, round_id, phase='clearing'):
    """(bytes sent, peak MB, {MPC phase: seconds}) of the round's MPC run, each the most of any node,
    from the nodes' logs."""
    import re
    done = re.compile(rf'round {re.escape(round_id)}: {phase} done in .* (\d+) bytes sent to the other nodes, '
                      r'peak ([\d.]+) MB \(phases: (.*)\)')
    sent, peak, phases = 0, 0.0, {}
    for i in range(deployment.nodes):
        with open(os.path.join(deployment.dir, f'node{i}.log')) as f:
            for match in done.finditer(f.read()):
                sent, peak = max(sent, int(match.group(1))), max(peak, float(match.group(2)))
                for name, seconds in re.findall(r'(\w+) ([\d.]+) s', match.group(3)):
                    phases[name] = max(phases.get(name, 0.0), float(seconds))
    return sent, peak, phases


def check(deployment, round_id, book, orders_path, sample=10):
    """Public results and a sample of participants' own rows equal the plaintext reference's."""
    plain = clear_plain(book)
    broker = BrokerClient(deployment.broker_address, deployment.keys)
    _, body = fetch_public(broker, deployment.keys, round_id)
    assert body['slots'] == public_table(book.config, plain), 'public results differ'
    expected = participant_table(book.config, plain)
    for p in random.Random(1).sample(book.participants, min(sample, len(book.participants))):
        state, status, values = fetch_own_results(broker, deployment.keys, p, round_id)
        config, rows = own_order_rows(state, status, values, orders_path, p)
        assert participant_table(config, type(plain)([], rows)) == [r for r in expected if r['participant'] == p], p
    broker.close()


def run(size, delay_ms, clients, work, profile_day=None):
    """One round of size participants x 1 slot over a fresh deployment with delay_ms between the nodes.

    Returns:
        The row: orders/s per submission mode, round latency, bytes sent and peak memory per node
        and the MPC phases (the most of any node), exact (checked against the reference).
    """
    directory = os.path.join(work, f'n{size}-d{delay_ms}')
    orders_path, market_path, count, _ = write_community(os.path.join(directory, 'community'), size, 1, 2026,
                                                         profile_day=profile_day)
    config = load_config(market_path)
    book = Book(config, load_orders(orders_path, config))
    deployment = LocalDeployment(os.path.join(directory, 'dep')).create(book.participants, delay_ms=delay_ms)
    for k in range(clients):  # one client certificate per representative (admission budgets each alone)
        keys.create_client(deployment.keys, f'rep{k}')
    deployment.start(timeout=120)
    row = {'participants': size, 'orders': count, 'delay_ms': delay_ms}
    try:
        broker = BrokerClient(deployment.broker_address, deployment.keys, 'operator')
        rounds = []
        modes = [('batched', clients, 64, 4)] + ([('single', 1, 1, 32)] if size <= 1000 and not delay_ms else [])
        for mode, parts, batch, workers in modes:
            round_id = f'r-{mode}'
            broker.open(round_id, book.slots, int(time.time() * 1000) + 3_600_000, open(market_path).read())
            seconds = submit(deployment, round_id, split_orders(orders_path, parts, directory), batch, workers)
            row[f'submit_{mode}_s'] = round(seconds, 2)
            row[f'orders_per_s_{mode}'] = round(count / seconds, 1)
            rounds.append(round_id)
            print(f'  {mode}: {count} orders from {parts} client processes in {seconds:.2f} s '
                  f'= {count / seconds:.0f} orders/s accepted by all 3 nodes', flush=True)
        round_id = rounds[0]
        closed = time.perf_counter()
        broker.close_round(round_id)
        wait_published(deployment, round_id, settlement=False)
        row['round_latency_s'] = round(time.perf_counter() - closed, 2)
        print(f'  round latency (close -> signed public results at the broker): {row["round_latency_s"]:.2f} s',
              flush=True)
        check(deployment, round_id, book, orders_path)
        row['exact'] = True
        row['bytes_per_node'], row['peak_rss_mb_per_node'], phases = node_costs(deployment, round_id)
        row.update({f'{name}_s': seconds for name, seconds in phases.items()}, phase_names=' '.join(phases))
        broker.close()
    finally:
        deployment.stop()
    shutil.rmtree(directory, ignore_errors=True)
    return row


def submit_readings(deployment, day, paths, orders_paths, batch, workers):
    """One `mpc-market meter submit` per readings part (with the orders of the same participants),
    concurrently; seconds to the last done."""
    started = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, '-m', 'mpc_market', 'meter', 'submit', '--broker',
                               deployment.broker_address, '--keys', deployment.keys, '--readings', p, '--orders',
                               o, '--day', day, '--batch', str(batch), '--workers', str(workers),
                               '--client', f'rep{k}'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, (p, o) in enumerate(zip(paths, orders_paths, strict=True))]
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f'meter submit failed: {out}{err}')
    return time.perf_counter() - started


def local_settlement(book, net_of):
    """(second-session wall seconds, its MPC settlement phase, SettlementResult) of the local run."""
    from mpc_market.mpc.local import settle_mpc
    result = settle_mpc(book, net_of, sessions=2, timeout=1800)
    phase = max(t['settlement'] for t in result.stats['settlement_session_timings'])
    return result.stats['settlement_session_s'], phase, result


def book_first_slot(orders_path, config):
    """The first slot any order of the file names."""
    return min(o.slot for o in load_orders(orders_path, config))


def run_settlement(size, clients, meter_clients, work, day='2026-12-01', profile_day=None):
    """One settlement round over gRPC of size participants x 1 slot, and the same data settled locally.

    Returns:
        The row: readings/s, settlement latency, the local session and phase, their ratios, and
        the bytes and peak memory of the deployment's settlement (the most of any node).
    """
    from mpc_market.market.plain import settle_plain
    from mpc_market.market.readings import load_readings
    from mpc_market.market.settlement import complete_readings
    from mpc_market.net.bills import round_bill
    from mpc_market.net.client import client_manifest
    from mpc_market.net.trusted import trusted_round
    directory = os.path.join(work, f'settle-n{size}')
    orders_path, market_path, count, readings_path = write_community(os.path.join(directory, 'community'), size, 1,
                                                                     2026, profile_day=profile_day)
    config = load_config(market_path)
    if config.start is not None:  # a time-stamped community (--profiles): its own delivery day
        import zoneinfo
        day = config.slot_start(book_first_slot(orders_path, config)).astimezone(
            zoneinfo.ZoneInfo(config.timezone)).date().isoformat()
    readings = {pair: net for pair, (net, _) in load_readings(readings_path, config).items()}
    orders = load_orders(orders_path, config)
    book = Book(config, orders, extra_pairs=list(readings))
    net_of, _ = complete_readings(book, readings)
    row = {'participants': size, 'orders': count, 'readings': len(readings)}
    deployment = LocalDeployment(os.path.join(directory, 'dep')).create(book.participants)
    for k in range(clients):
        keys.create_client(deployment.keys, f'rep{k}')
    deployment.start(timeout=120)
    try:
        broker = BrokerClient(deployment.broker_address, deployment.keys, 'operator')
        now = int(time.time() * 1000)
        broker.open('r-settle', book.slots, now + 3_600_000, open(market_path).read(), 0, now + 7_200_000, day)
        submit(deployment, 'r-settle', split_orders(orders_path, clients, directory), 64, 4)
        broker.close_round('r-settle')
        state = broker.wait('r-settle', 1800)
        assert state.state == market_pb2.RoundState.CLEARED, state
        readings_parts = split_orders(readings_path, meter_clients, os.path.join(directory, 'readings'))
        seconds = submit_readings(deployment, day, readings_parts,
                                  split_orders(orders_path, meter_clients, os.path.join(directory, 'own-orders')),
                                  256, 4)
        row['readings_s'] = round(seconds, 2)
        row['readings_per_s'] = round(len(readings) / seconds, 1)
        row['meter_clients'] = meter_clients
        print(f'  {len(readings)} meter readings from {meter_clients} client processes in {seconds:.2f} s '
              f'= {len(readings) / seconds:.0f} readings/s accepted by all 3 nodes', flush=True)
        closed = time.perf_counter()
        broker.close_round('r-settle')  # the readings deadline: now
        wait_published(deployment, 'r-settle', settlement=True)
        row['settlement_latency_s'] = round(time.perf_counter() - closed, 2)
        print(f'  close of readings -> signed settlement at the broker: {row["settlement_latency_s"]:.2f} s',
              flush=True)
        reference = {b.participant: b for b in settle_plain(book, net_of).bills}
        settled = trusted_round(broker.status('r-settle'), client_manifest(deployment.keys), 'r-settle')
        for p in random.Random(2).sample(book.participants, min(5, len(book.participants))):
            trade, deviation, retailer_only, _ = round_bill(broker, deployment.keys, p, settled,
                                                            orders, readings)
            bill = reference[p]
            assert (trade, deviation, retailer_only) == (bill.trade_amount, bill.deviation_amount,
                                                         bill.retailer_only_amount), p
        broker.close()
        row['bytes_per_node'], row['peak_rss_mb_per_node'], _ = node_costs(deployment, 'r-settle', 'settlement')
    finally:
        deployment.stop()
    wall, phase, _ = local_settlement(book, net_of)
    row['local_settlement_session_s'] = round(wall, 2)
    row['local_settlement_phase_s'] = round(phase, 2)
    row['ratio_to_local_session'] = round(row['settlement_latency_s'] / wall, 2)
    row['ratio_to_local_phase'] = round(row['settlement_latency_s'] / phase, 2)
    row['exact'] = True
    print(f'  local, same data: settlement session {wall:.2f} s (MPC settlement phase {phase:.2f} s); '
          f'deployment / local session = {row["ratio_to_local_session"]:.2f}x, '
          f'/ local phase = {row["ratio_to_local_phase"]:.2f}x', flush=True)
    shutil.rmtree(directory, ignore_errors=True)
    return row
