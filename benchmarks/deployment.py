"""Deployment benchmark: broker + 3 node processes over mutual TLS on this machine.

For each size: submission throughput (participants' orders accepted by every node per second,
from several concurrent client processes, each a representative submitting batches; and for
the smallest size also one order per request from many threads; each representative with its
own client certificate, as parties/README.md advises) and round latency (CloseRound
at the broker -> signed public results available at the broker), without and with added
latency between the nodes (a TCP delay proxy on the MPyC links; one-way delay). Every round is
checked against the plaintext reference (public results, and a sample of participants' own
results reconstructed by `mpc_market.net.client`).

    python benchmarks/deployment.py [--sizes 1000 10000] [--delays 0 10] [--clients 4]
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine, save_rows  # noqa: E402

from mpc_market.common import keys  # noqa: E402
from mpc_market.market.book import Book  # noqa: E402
from mpc_market.market.config import load_config
from mpc_market.market.generate import write_community  # noqa: E402
from mpc_market.market.orders import load_orders  # noqa: E402
from mpc_market.market.output import participant_table, public_table  # noqa: E402
from mpc_market.market.plain import clear_plain  # noqa: E402
from mpc_market.net.client import BrokerClient, fetch_own_results, fetch_public, own_order_rows  # noqa: E402
from mpc_market.net.localdeploy import LocalDeployment  # noqa: E402
from mpc_market.rpc import market_pb2  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results')


def split_orders(orders_path, parts, out_dir):
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


def run(size, delay_ms, clients, work):
    directory = os.path.join(work, f'n{size}-d{delay_ms}')
    orders_path, market_path, count, _ = write_community(os.path.join(directory, 'community'), size, 1, 2026)
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
        while True:
            try:
                broker.public(round_id)
                break
            except Exception:  # noqa: BLE001 - not yet published
                state = broker.status(round_id)
                if state.state == market_pb2.RoundState.FAILED and state.attempts >= 5:
                    raise RuntimeError(state.reason)
                time.sleep(0.05)
        row['round_latency_s'] = round(time.perf_counter() - closed, 2)
        print(f'  round latency (close -> signed public results at the broker): {row["round_latency_s"]:.2f} s',
              flush=True)
        check(deployment, round_id, book, orders_path)
        row['exact'] = True
        broker.close()
    finally:
        deployment.stop()
    shutil.rmtree(directory, ignore_errors=True)
    return row


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--sizes', type=int, nargs='+', default=[1000, 10000])
    parser.add_argument('--delays', type=float, nargs='+', default=[0, 10])
    parser.add_argument('--clients', type=int, default=4, help='concurrent client processes')
    args = parser.parse_args()
    info = machine()
    print(f'machine: {info["cores"]} cores, {info["cpu"]}, Python {info["python"]}')
    work = tempfile.mkdtemp(prefix='mpc-market-deploy-bench-')
    rows = []
    try:
        for delay in args.delays:
            for size in args.sizes:
                print(f'{size} participants, {delay:g} ms added one-way latency between nodes:', flush=True)
                rows.append(run(size, delay, args.clients, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save_rows(RESULTS, 'deployment', info, rows)


if __name__ == '__main__':
    main()
