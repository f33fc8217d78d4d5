"""Suite `deployment`: order intake, round latency and settlement over gRPC, broker + 3 nodes on this machine.

Broker + 3 node processes + the client processes on one machine, mutual TLS everywhere
(benchmarks/deployment.py). Per size and one-way delay between the nodes: orders accepted by all
three nodes per second (representatives submitting batches; at the smallest size without delay
also one order per request from 32 threads) and the round latency (CloseRound at the broker ->
node-signed public results); each round checked against the plaintext reference. Per settlement
size: meter readings accepted per second, the close of the readings window -> signed settlement,
and the same data settled locally as a second MPC session (its wall time and its settlement phase).
The delay sweep at one size is the `latency` suite.
"""

import os
import tempfile

from .deployment import run as run_round
from .deployment import run_settlement
from .suite import figure, profile_day

NAME, TITLE = 'deployment', 'Deployment: order intake, round latency and settlement over gRPC'
ROUNDS = [('participants', 'participants'), ('added one-way latency ms', 'delay_ms'),
          ('orders/s, batches of 64', 'orders_per_s_batched'),
          ('orders/s, one order per request (32 threads)', 'orders_per_s_single'),
          ('round latency s', 'round_latency_s'), ('bytes sent per node', 'bytes_per_node'),
          ('peak MB per node', 'peak_rss_mb_per_node'), ('= reference', 'exact')]
SETTLEMENTS = [('participants', 'participants'), ('meter clients', 'meter_clients'),
               ('readings/s accepted by all 3 nodes', 'readings_per_s'), ('readings s', 'readings_s'),
               ('close of readings -> signed settlement s', 'settlement_latency_s'),
               ('local second session s', 'local_settlement_session_s'),
               ('its MPC settlement phase s', 'local_settlement_phase_s'),
               ('deployment / local session', 'ratio_to_local_session'),
               ('deployment / local phase', 'ratio_to_local_phase'), ('bytes sent per node', 'bytes_per_node'),
               ('peak MB per node', 'peak_rss_mb_per_node'), ('= reference', 'exact')]
COLUMNS = ROUNDS


def complete(row, task):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: a row of deployment.run (task 'round') or deployment.run_settlement ('settlement').
        task: which.

    Returns:
        The row with task and seconds (the round's or the settlement's latency at the broker);
        bytes_per_node and peak_rss_mb_per_node None where the old files did not record them.
    """
    seconds = row['round_latency_s' if task == 'round' else 'settlement_latency_s']
    return {'task': task, **row, 'seconds': seconds, 'bytes_per_node': row.get('bytes_per_node'),
            'peak_rss_mb_per_node': row.get('peak_rss_mb_per_node')}


def run(params, seed):
    """Every delay x size of the preset, then every settlement size."""
    rows = []
    day = profile_day(params)
    with tempfile.TemporaryDirectory(prefix='mpc-market-deploy-bench-') as work:
        for delay in params['delays_ms']:
            for size in params['sizes']:
                print(f'{size} participants, {delay:g} ms added one-way latency between nodes:', flush=True)
                rows.append(complete(run_round(size, delay, params['clients'], work, day), 'round'))
        for size in params['settle_sizes']:
            print(f'{size} participants, settlement over gRPC:', flush=True)
            rows.append(complete(run_settlement(size, params['clients'], params['meter_clients'], work,
                                                profile_day=day), 'settlement'))
    return rows, describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return [f'{params["clients"]} representative processes, each with its own client certificate; every order '
            'committed with synchronous=FULL at every node before its receipt; one slot per participant.',
            'round latency: CloseRound at the broker until it holds the public results signed by all nodes; the '
            'delay is a TCP delay proxy on the MPyC links only.',
            f'settlement: readings from {params["meter_clients"]} `meter submit` processes in batches of 256; the '
            'local second session is settle_mpc(sessions=2) on the same data.']


def tables(rows):
    """One table of the rounds and one of the settlements."""
    return [(title, columns, [r for r in rows if r['task'] == task])
            for title, columns, task in (('Rounds', ROUNDS, 'round'), ('Settlement over gRPC', SETTLEMENTS,
                                                                         'settlement'))
            if any(r['task'] == task for r in rows)]


def figures(rows, directory):
    rounds = [r for r in rows if r['task'] == 'round']
    settlements = [r for r in rows if r['task'] == 'settlement']
    fig = figure()
    left, right = fig.subplots(1, 2, width_ratios=(3, 2) if settlements else None) if settlements \
        else (fig.subplots(), None)
    sizes = sorted({r['participants'] for r in rounds})
    delays = sorted({r['delay_ms'] for r in rounds})
    width = 0.8 / len(delays)
    for k, delay in enumerate(delays):
        by_size = {r['participants']: r['round_latency_s'] for r in rounds if r['delay_ms'] == delay}
        left.bar([i + (k - (len(delays) - 1) / 2) * width for i, n in enumerate(sizes) if n in by_size],
                 [by_size[n] for n in sizes if n in by_size], width, label=f'{delay:g} ms one-way delay')
    left.set_xticks(range(len(sizes)), [f'{n:,}' for n in sizes])
    left.set_xlabel('participants (1 slot each)')
    left.set_ylabel('round latency: close → signed public results (s)')
    left.set_title('clearing rounds', fontsize=9)
    left.set_ylim(0, 1.2 * max(r['round_latency_s'] for r in rounds))
    left.legend(fontsize=7)
    left.grid(True, axis='y', alpha=0.3)
    if right is not None:
        series = [('deployment: close of readings → signed', 'settlement_latency_s'),
                  ('local second session', 'local_settlement_session_s'),
                  ('its MPC settlement phase', 'local_settlement_phase_s')]
        width = 0.8 / len(series)
        for k, (name, key) in enumerate(series):
            right.bar([i + (k - 1) * width for i in range(len(settlements))], [r[key] for r in settlements],
                      width, label=name)
        right.set_xticks(range(len(settlements)), [f'{r["participants"]:,}' for r in settlements])
        right.set_xlabel('participants')
        right.set_ylabel('seconds')
        right.set_title('settlement, same data', fontsize=9)
        right.set_ylim(0, 1.4 * max(r['settlement_latency_s'] for r in settlements))  # room for the legend
        right.legend(fontsize=7)
        right.grid(True, axis='y', alpha=0.3)
    fig.suptitle('Broker + 3 nodes over mutual TLS, this machine', fontsize=10)
    fig.tight_layout()
    path = os.path.join(directory, 'deployment.png')
    fig.savefig(path)
    return [('round latency and settlement', path)]
