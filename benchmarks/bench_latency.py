"""Suite `latency`: a deployment's round against the one-way delay between the nodes.

Broker + 3 nodes + clients on this machine over mutual TLS (benchmarks/deployment.py), with a
fixed one-way delay on every MPyC link from the TCP delay proxy (this kernel has no netem; with
netem, parties/netns.sh gives the same). Per delay: orders accepted per second and the round
latency (gate closure at the broker -> node-signed public results), each round checked against
the plaintext reference. The extra latency divided by the delay estimates the number of
sequential communication rounds of a clearing.
"""

import os
import tempfile

from .deployment import run as run_deployment
from .suite import figure, profile_day

NAME, TITLE = 'latency', 'Round latency against network delay between the nodes'
COLUMNS = [('one-way delay ms', 'delay_ms'), ('participants', 'participants'), ('round latency s', 'seconds'),
           ('orders/s', 'orders_per_s_batched'), ('rounds (estimate)', 'rounds_estimate'),
           ('rounds per phase (estimate)', 'rounds_by_phase'), ('KiB sent per node', 'kib_per_node'),
           ('peak MB per node', 'peak_rss_mb_per_node'), ('= reference', 'exact')]


def run(params, seed):
    rows = []
    with tempfile.TemporaryDirectory(prefix='mpc-market-latency-') as work:
        for delay in params['delays_ms']:
            row = run_deployment(params['participants'], delay, params['clients'], work, profile_day(params))
            row['seconds'] = row.pop('round_latency_s')
            row['kib_per_node'] = round(row['bytes_per_node'] / 1024, 1)
            rows.append(row)
    base = next((r for r in rows if r['delay_ms'] == 0), None)
    for r in rows:
        delayed = base and r['delay_ms']
        r['rounds_estimate'] = round((r['seconds'] - base['seconds']) * 1000 / r['delay_ms']) if delayed else ''
        r['rounds_by_phase'] = ', '.join(  # the same estimate per MPC phase, from the nodes' phase timings
            f'{name} {round((r[f"{name}_s"] - base[f"{name}_s"]) * 1000 / r["delay_ms"])}'
            for name in r['phase_names'].split() if name != 'node_total') if delayed else ''
    notes = ['rounds (estimate): (latency - latency without delay) / one-way delay; each sequential exchange '
             'between the nodes costs about one one-way delay.',
             f'orders/s: {params["clients"]} representative processes submitting batches of 64 (the delay is only '
             'between the nodes).']
    return rows, notes


def figures(rows, directory):
    fig = figure()
    axis = fig.subplots()
    axis.plot([r['delay_ms'] for r in rows], [r['seconds'] for r in rows], 'o-')
    axis.set_xlabel('one-way delay between the nodes (ms)')
    axis.set_ylabel('round latency (s)')
    axis.set_title(f'{rows[0]["participants"]} participants x 1 slot, 3 nodes')
    axis.grid(True, alpha=0.3)
    fig.tight_layout()
    path = os.path.join(directory, 'latency.png')
    fig.savefig(path)
    return [('round latency against delay', path)]
