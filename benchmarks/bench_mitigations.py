"""Suite `mitigations`: what each security mitigation costs, measured by switching it off here.

Nothing here touches a production path: the switches are benchmark-only (benchmarks/instrument
patches the MPC node processes it is put in front of; the rest calls the library's own functions
with and without the mitigation's step). Each pair runs in the same run, on the same data:

- MPC input validation (malicious clients): a clearing with the nodes' validation and without it;
- TLS on the MPC links: the same clearing over mutual TLS and over MPyC's plain TCP;
- signatures and receipts: a participant's submission to 3 nodes (sharing, hashes) with and
  without the Ed25519 envelope signature, the 3 nodes' verifications, their batch receipts and
  the client's receipt checks;
- durable commits: a node accepting submissions in batches of 64 with SQLite synchronous=FULL
  and with synchronous=OFF;
- result encryption: every participant's result shares from 3 nodes sealed to its X25519 key and
  opened, against handing them over in the clear;
- DP noise and min-cohort, whose cost is utility, not time: the error the noise adds to a
  feeder's total, and the share of feeders held back when some meters do not upload.
"""

import os
import random
import subprocess
import tempfile
import time
from fractions import Fraction

import numpy as np

from mpc_market.market import plain
from mpc_market.market.generate import FEEDER_SIZE, community, feeder_map
from mpc_market.mpc import field as ff
from mpc_market.mpc import local

from .bench_scaling import book_of
from .common import instrumented
from .suite import figure, mpc_row, plain_log_ticks, profile_day

NAME, TITLE = 'mitigations', 'What security costs: each mitigation switched off in a benchmark-only harness'
COLUMNS = [('mitigation', 'mitigation'), ('measured on', 'workload'), ('with s', 'with_s'), ('without s', 'without_s'),
           ('time overhead %', 'overhead_pct'), ('utility cost', 'utility'), ('= reference', 'exact')]


def _pair(mitigation, workload, with_s, without_s, exact, utility='', **extra):
    row = {'mitigation': mitigation, 'workload': workload, 'with_s': round(with_s, 3), 'without_s': round(without_s, 3),
           'overhead_pct': round(100 * (with_s / without_s - 1), 1) if without_s else '', 'utility': utility,
           'exact': exact, 'bytes_per_node': '', 'peak_rss_mb_per_node': '', **extra}  # MPC rows only
    row['seconds'] = row['with_s']
    print(f'  {mitigation:<24} with {with_s:8.3f} s  without {without_s:8.3f} s  exact {exact}', flush=True)
    return row


def mpc_switch(params, seed, switch):
    """A local clearing with and without one node-side mitigation; compared on the MPC session."""
    book, _ = book_of(params['participants'], params['slots'], seed, False, profile_day(params))
    reference = plain.clear_plain(book).rows
    runs = {}
    for off in ('', switch):
        with instrumented(MPC_MARKET_BENCH_OFF=off):
            started = time.perf_counter()
            result = local.clear_mpc(book, nodes=3, timeout=3600)
        runs[off] = (mpc_row(result, started, len(book.participants)), result.rows == reference)
        if switch == 'mpc-tls':  # the switch took effect, and only where asked
            assert result.stats['mpc_tls'] == (off == ''), result.stats['mpc_tls']
    (on, on_exact), (off, off_exact) = runs[''], runs[switch]
    if switch == 'validation':
        assert off.get('validation_s', 0) < on['validation_s'] / 10, (on, off)
    name = {'validation': 'MPC input validation', 'mpc-tls': 'TLS on the MPC links'}[switch]
    return _pair(name, f'{len(book.participants)} participants x {params["slots"]} slots, 3 nodes (MPC session)',
                 on['node_total_s'], off['node_total_s'], on_exact and off_exact,
                 bytes_per_node=on['bytes_per_node'], peak_rss_mb_per_node=on['peak_rss_mb_per_node'])


def signatures(params):
    """Submitting n participants' packages to 3 nodes, with and without signatures and receipts."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from mpc_market.net import messages
    n, batch = params['submissions'], 64
    keys = [ed25519.Ed25519PrivateKey.generate() for _ in range(n)]
    registry = {f'p{i}': k.public_key() for i, k in enumerate(keys)}
    node_keys = [ed25519.Ed25519PrivateKey.generate() for _ in range(3)]
    market = '[market]\nprice_floor = 0.10\nprice_ceiling = 0.20\ntick = 0.01\n'
    params = messages.RoundParams.of('r1', [0], market, 10**12, 0, 0, '', 3)
    values = np.random.default_rng(1).integers(0, 2, size=(n, 1, 40)).astype(np.uint64)

    def packages_of(i):
        shares = ff.share_values(values[i], 1, 3)
        return [np.ascontiguousarray(s).astype('<u4').tobytes() for s in shares]

    started = time.perf_counter()
    for i in range(n):
        [messages.package_hash(p) for p in packages_of(i)]
    without = time.perf_counter() - started
    started, exact = time.perf_counter(), True
    for start in range(0, n, batch):
        sealed = []
        for i in range(start, min(start + batch, n)):
            packages = packages_of(i)
            envelope, signature = messages.seal(keys[i], 'r1', f'p{i}', packages, params_sha256=params.sha256())
            sealed.append((envelope, signature, packages))
        for node, node_key in enumerate(node_keys):
            items = []
            for envelope, signature, packages in sealed:
                messages.check(envelope, signature, registry, params, node, packages[node], set())
                items.append(('r1', envelope.participant, envelope.nonce, envelope.package_hashes[node]))
            receipt = node_key.sign(messages.batch_receipt_bytes(node, 0, items))
            node_key.public_key().verify(receipt, messages.batch_receipt_bytes(node, 0, items))  # the client's check
    with_s = time.perf_counter() - started
    return _pair('signatures and receipts', f'{n} participants submitting to 3 nodes (client + node CPU)',
                 with_s, without, exact)


def durable_commits(params):
    """A node accepting submissions in batches of 64, fsync on every commit or not at all."""
    from mpc_market.net.store import Store
    n, timings = params['submissions'], {}
    here = os.path.dirname(os.path.abspath(__file__))  # on the checkout's disk, as a node's data_dir would be
    filesystem = subprocess.run(['stat', '-f', '-c', '%T', here], capture_output=True, text=True).stdout.strip()
    for mode in ('FULL', 'OFF'):
        with tempfile.TemporaryDirectory(prefix='.durable-', dir=here) as work:
            store = Store(os.path.join(work, 'node.db'))
            store._db.execute(f'PRAGMA synchronous={mode}')  # benchmark-only: never done by the product
            store.open_round('r1', [0], int(time.time() * 1000) + 3_600_000, '[market]\n')
            package = os.urandom(16 * 40)
            started = time.perf_counter()
            for start in range(0, n, 64):
                errors = store.accept_many([('r1', f'p{i}', 'order', os.urandom(16).hex(), b'{}' * 100, b's' * 64,
                                             package, b'r' * 64, 0) for i in range(start, min(start + 64, n))])
                assert not any(errors), errors
            timings[mode] = time.perf_counter() - started
            store.close()
    return _pair('durable commits', f'{n} submissions stored by one node in batches of 64 ({filesystem})',
                 timings['FULL'], timings['OFF'], True)


def result_encryption(params):
    """Every participant's result shares from 3 nodes: sealed to its key and opened, or in the clear."""
    from cryptography.hazmat.primitives.asymmetric import x25519

    from mpc_market.net.sealed import open_sealed, seal
    n = params['submissions']
    keys = [x25519.X25519PrivateKey.generate() for _ in range(min(n, 256))]
    shares = [os.urandom(16 * 3 * 4) for _ in range(n)]
    started = time.perf_counter()
    copied = [bytes(bytearray(s)) for s in shares for _ in range(3)]
    without = time.perf_counter() - started
    started, exact = time.perf_counter(), len(copied) == 3 * n
    for i, plaintext in enumerate(shares):
        key = keys[i % len(keys)]
        for node in range(3):
            context = f'r1/p{i}/{node}'.encode()
            ephemeral, ciphertext = seal(key.public_key(), plaintext, context)
            exact &= open_sealed(key, ephemeral, ciphertext, context) == plaintext
    return _pair('result encryption', f'{n} participants x 3 nodes sealed and opened', time.perf_counter() - started,
                 without, exact)


def dp_noise(params, seed, sensitivity):
    """Discrete Laplace noise on every feeder total of a day: time, and the error against the totals."""
    from mpc_market.stats.dp import Noise
    participants, epsilon = params['households'], Fraction(params['dp_epsilon'])
    _, readings = community(participants, 96, seed, with_readings=True, profile_day=profile_day(params))
    feeders = feeder_map(sorted({r['participant'] for r in readings}))
    totals = {}
    for r in readings:
        key = (feeders[r['participant']][0], r['slot'])
        totals[key] = totals.get(key, 0) + max(0, r['net_wh'])
    noise = Noise(epsilon, sensitivity)
    started = time.perf_counter()
    samples = noise.sample(2 * len(totals))
    seconds = time.perf_counter() - started
    error = sum(abs(s - noise.bias) for s in samples) / len(samples)
    mean_total = sum(totals.values()) / len(totals)
    return _pair(f'DP noise (max_reading_wh {sensitivity})',
                 f'{len(totals) // 96} feeders x 96 slots x 2 fields, epsilon {epsilon} per field',
                 seconds, 0.0, True, utility=f'mean error {error:,.0f} Wh per feeder total '
                 f'({100 * error / mean_total:,.0f}% of the mean import {mean_total:,.0f} Wh)',
                 error_pct=round(100 * error / mean_total, 1))


def min_cohort(params, seed):
    """Feeders held back at each minimum cohort when some meters do not upload that day."""
    rng = random.Random(seed)
    names = [f'h{i}' for i in range(params['households'])]
    feeders = feeder_map(names)
    uploaded = {}
    for name in names:
        if rng.random() < params['upload_rate']:
            uploaded[feeders[name][0]] = uploaded.get(feeders[name][0], 0) + 1
    all_feeders = sorted({f for f, _ in feeders.values()})
    held = {k: sum(1 for f in all_feeders if uploaded.get(f, 0) < max(2, k)) for k in params['min_cohorts']}
    utility = ', '.join(f'min {k}: {held[k]}/{len(all_feeders)} held back' for k in params['min_cohorts'])
    return _pair('min-cohort', f'{len(all_feeders)} feeders of {FEEDER_SIZE}, {params["upload_rate"]:.0%} of meters '
                 'uploading', 0.0, 0.0, True, utility=utility,
                 held_back=[[k, held[k], len(all_feeders)] for k in params['min_cohorts']])


def run(params, seed):
    rows = [mpc_switch(params, seed, 'validation'), mpc_switch(params, seed, 'mpc-tls'), signatures(params),
            durable_commits(params), result_encryption(params),
            *(dp_noise(params, seed, sensitivity) for sensitivity in params['max_reading_wh']),
            min_cohort(params, seed)]
    notes = ['with / without: the same work with the mitigation and with it switched off, in the same run; '
             'overhead = with / without - 1. MPC rows compare the MPC session (start-up to outputs, slowest node).',
             'without validation a single malicious client can corrupt every price and allocation '
             '(tests/mpc/test_clearing.py::test_malicious_orders_are_excluded_and_the_rest_clear); without TLS '
             'any on-path observer reads the shares of every link.',
             'DP and min-cohort cost utility, not time: the DP row gives the noise\'s mean absolute error '
             '(sensitivity = the market\'s max_reading_wh, the most one meter can add to a field: the default 65,535 '
             'Wh, and 4,000 Wh, a 16 kW connection over 15 minutes); the min-cohort row the feeders whose totals are '
             'not released.']
    return rows, notes


def figures(rows, directory):
    """Time and utility on panels of their own: seconds added (left), the DP error and the feeders that
    min-cohort holds back (right); a mitigation whose cost is utility is not on the seconds axis."""
    fig = figure(9.5, 4.6)
    grid = fig.add_gridspec(2, 2, width_ratios=(1.35, 1))
    axis = fig.add_subplot(grid[:, 0])
    timed = [r for r in rows if r['overhead_pct'] != '']  # measured with and without; utility rows have none
    added = [r['with_s'] - r['without_s'] for r in timed]
    axis.barh([r['mitigation'] for r in timed], added, color='#4c72b0')
    for y, (r, extra) in enumerate(zip(timed, added, strict=True)):
        share = f', {r["overhead_pct"]:+,.0f}%' if r['overhead_pct'] < 1000 else ''  # x300 says nothing useful
        noise = ' (within noise)' if extra <= 0 else ''
        axis.text(max(extra, 0), y, f' {extra:+.3g} s{share}{noise}', va='center', fontsize=8)  # workloads: table
    if min(added) > 0:
        axis.set_xscale('log')
        plain_log_ticks(axis, 'x')
        axis.set_xlim(min(added) / 2, max(added) * 6)
    else:  # a small run: a mitigation may cost less than the noise, which a log axis cannot show
        axis.axvline(0, color='black', linewidth=0.8)
        span = (max(added) - min(added)) or 1.0
        axis.set_xlim(min(added) - 0.1 * span, max(added) + 0.6 * span)
    axis.set_xlabel('seconds added (with - without, same run, same data)')
    axis.set_title('Time', fontsize=10)
    axis.invert_yaxis()
    axis.tick_params(axis='y', labelsize=8)
    dp = [r for r in rows if 'error_pct' in r]
    cohort = next((r for r in rows if 'held_back' in r), None)
    top, bottom = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    if dp:
        labels = [f'max reading\n{int(r["mitigation"].split()[-1].strip(")")):,} Wh' for r in dp]
        bars = top.barh(labels, [r['error_pct'] for r in dp], color='#c44e52')
        top.bar_label(bars, labels=[f' {r["error_pct"]:,.0f}%' for r in dp], fontsize=8)
        top.set_xlim(0, max(r['error_pct'] for r in dp) * 1.35)
        top.invert_yaxis()
        top.set_title("DP noise: mean error per feeder total,\n% of the feeder's mean import per slot", fontsize=9)
        top.tick_params(labelsize=8)
    if cohort:
        bars = bottom.bar([f'min {k}' for k, _, _ in cohort['held_back']],
                          [100 * held / total for _, held, total in cohort['held_back']], color='#dd8452')
        bottom.bar_label(bars, labels=[f'{held}/{total}' for _, held, total in cohort['held_back']], fontsize=8)
        bottom.set_ylim(0, 100)
        bottom.set_ylabel('% of feeders', fontsize=8)
        bottom.set_title('min-cohort: feeders held back', fontsize=9)
        bottom.tick_params(labelsize=8)
    fig.suptitle('What security costs: time (left) and utility (right)', fontsize=11)
    fig.tight_layout()
    path = os.path.join(directory, 'mitigations.png')
    fig.savefig(path)
    return [('seconds each mitigation adds; the utility DP noise and min-cohort cost', path)]
