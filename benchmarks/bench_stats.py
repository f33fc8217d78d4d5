"""Suite `stats`: grid statistics of N meters x 96 slots under a DSO (feeder) and a TSO (zone) Paillier key.

Generated community readings (import and export per slot), feeders of 20 households, zones of 5
feeders, on one core: encryption per meter-day under one key (packed with DJN randomness as
shipped, packed with phe's r^n, and one ciphertext per value with phe as the naive baseline; each
includes the Ed25519 signature when packed), the aggregator's time to check and to sum all
meter-days for both keys, decryption per feeder-day, bytes per meter-day, and whether the
decrypted totals equal the plaintext reference. With gRPC (``grpc = "auto"``: for 2048-bit runs)
also the aggregator as a process over mutual TLS: meter-days accepted per second (4 client
threads, batches of 256, each committed before its answer) and the first fetch (loading, summing
and freezing the day). There are no MPC nodes here: bytes and memory per node are not measured.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent import futures

from cryptography.hazmat.primitives.asymmetric import ed25519, x25519
from phe import paillier as phe

from mpc_market.common import keys
from mpc_market.market.generate import community, feeder_map
from mpc_market.mpc.local import free_ports
from mpc_market.stats import paillier
from mpc_market.stats.aggregate import Aggregator, bundle_text
from mpc_market.stats.client import AggregatorClient
from mpc_market.stats.reference import plain_totals
from mpc_market.stats.release import decrypt_bundle
from mpc_market.stats.submission import encrypt_day

from .suite import figure, profile_day

NAME, TITLE = 'stats', 'Grid statistics: Paillier encryption, aggregation and decryption'
COLUMNS = [('meters', 'meters'), ('key bits', 'bits'), ('ciphertexts / meter-day', 'ciphertexts_per_meter_day'),
           ('encrypt packed (DJN) ms', 'encrypt_packed_ms'), ('packed, phe r^n ms', 'encrypt_packed_phe_r^n_ms'),
           ('unpacked, phe ms', 'encrypt_unpacked_phe_ms'), ('aggregate check s', 'aggregate_check_s'),
           ('aggregate sum s', 'aggregate_sum_s'), ('aggregate total s (2 keys)', 'seconds'),
           ('decrypt a feeder-day ms', 'decrypt_feeder_day_ms'),
           ('bytes / meter-day / key (protobuf)', 'protobuf_bytes_per_meter_day'),
           ('gRPC meter-days/s', 'grpc_meter_days_per_s'), ('gRPC first fetch s', 'grpc_first_fetch_s'),
           ('= reference', 'exact')]


def complete(row):
    """The suite frame's common fields of a row (also for rows converted from the old script's files).

    Args:
        row: a row with the script's fields (aggregate_total_s, exact).

    Returns:
        The row with seconds (the aggregator's check + sum of all meter-days under both keys) and
        bytes_per_node, peak_rss_mb_per_node (None: no MPC node in this suite).
    """
    return dict(row, seconds=row['aggregate_total_s'], bytes_per_node=None, peak_rss_mb_per_node=None)


DAY = (datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)).isoformat()


def meter_days(meters, seed, day=None):
    """{meter: 192 values (import per slot, then export per slot)} of a generated community."""
    _, readings = community(meters, 96, seed, with_readings=True, profile_day=day)
    days = {}
    for r in readings:
        values = days.setdefault(r['participant'], [0] * 192)
        net = min(abs(r['net_wh']), 65535)
        values[r['slot'] if r['net_wh'] > 0 else 96 + r['slot']] = net
    return days


def per_meter_day(function, items):
    started = time.perf_counter()
    for item in items:
        function(item)
    return (time.perf_counter() - started) / len(items) * 1e3


def grpc_run(work, submissions, public_keys, registry, feeders, threads=4, batch=256):
    """(meter-days accepted per second, first fetch seconds) against an aggregator process."""
    key_dir = os.path.join(work, 'keys')
    keys.create_ca(key_dir)
    keys.create_aggregator(key_dir)
    for client in ('submitter', public_keys[0].name):
        keys.create_client(key_dir, client)
    raw = lambda k: k.public_bytes_raw().hex()  # noqa: E731
    kex = raw(x25519.X25519PrivateKey.generate().public_key())  # the aggregator uses only the signing keys
    with open(os.path.join(key_dir, 'registry.json'), 'w') as f:
        json.dump({m: {'sign': raw(k), 'kex': kex} for m, k in registry.items()}, f)
    with open(os.path.join(work, 'feeders.csv'), 'w') as f:
        f.write('participant,feeder,zone\n' + ''.join(f'{m},{fd},{z}\n' for m, (fd, z) in feeders.items()))
    for key in public_keys:
        key.write(os.path.join(work, f'{key.name}.pub.json'))
    port, = free_ports(1)
    address = f'127.0.0.1:{port}'
    with open(os.path.join(work, 'aggregator.toml'), 'w') as f:
        f.write(f'[aggregator]\nlisten = "{address}"\ndata_dir = "agg"\nkeys = "keys"\nfeeders = "feeders.csv"\n'
                f'public_keys = {json.dumps([f"{k.name}.pub.json" for k in public_keys])}\n')
    server = subprocess.Popen([sys.executable, '-m', 'mpc_market', 'stats', 'aggregator', '--config',
                               os.path.join(work, 'aggregator.toml')], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        assert 'listening' in server.stdout.readline()
        clients = [AggregatorClient(address, key_dir, 'submitter') for _ in range(threads)]
        chunks = [submissions[i:i + batch] for i in range(0, len(submissions), batch)]
        started = time.perf_counter()
        with futures.ThreadPoolExecutor(threads) as pool:
            outcomes = [o for part in pool.map(lambda i: clients[i % threads].submit(chunks[i], batch),
                                               range(len(chunks)))
                        for o in part]
        rate = len(submissions) / (time.perf_counter() - started)
        assert all(error is None for _, error in outcomes), [e for _, e in outcomes if e][:3]
        operator = AggregatorClient(address, key_dir, public_keys[0].name)
        started = time.perf_counter()
        operator.fetch(DAY, public_keys[0].key_id, timeout=600)
        fetch_s = time.perf_counter() - started
        for client in clients + [operator]:
            client.close()
        return rate, fetch_s
    finally:
        server.terminate()
        server.wait(10)


def one(meters, bits, seed, samples, with_grpc, unpacked=3, day=None):
    """The row of N meters under two keys of the given bits (unpacked: meter-days encrypted one value at a time)."""
    days = meter_days(meters, seed, day)
    feeders = feeder_map(sorted(days))
    dso, dso_private = paillier.generate('dso', 'feeder', bits)
    tso, tso_private = paillier.generate('tso', 'zone', bits)
    signing = {m: ed25519.Ed25519PrivateKey.generate() for m in days}
    registry = {m: k.public_key() for m, k in signing.items()}
    names = sorted(days)
    dso.encrypt(0), tso.encrypt(0)                      # build the fixed-base tables (once per meter)

    encrypt = lambda m, keys, standard=False: encrypt_day(m, DAY, feeders[m][0], days[m], keys, signing[m], standard)  # noqa: E731
    sample = names[:samples]
    packed_ms = per_meter_day(lambda m: encrypt(m, [dso]), sample)
    packed_standard_ms = per_meter_day(lambda m: encrypt(m, [dso], True), sample[:max(5, samples // 20)])
    phe_key = phe.PaillierPublicKey(dso.n)
    unpacked_ms = per_meter_day(lambda m: [phe_key.encrypt(v) for v in days[m]], sample[:unpacked])

    started = time.perf_counter()
    submissions = [encrypt(m, [dso, tso]) for m in names]
    encrypt_all_s = time.perf_counter() - started

    aggregator = Aggregator([dso, tso], registry, feeders, DAY)
    started = time.perf_counter()
    for s in submissions:
        aggregator.accept(s)
    check_s = time.perf_counter() - started
    started = time.perf_counter()
    bundles = aggregator.release()
    sum_s = time.perf_counter() - started

    exact, decrypt_ms = True, {}
    with tempfile.TemporaryDirectory() as work:
        for key, private in ((dso, dso_private), (tso, tso_private)):
            path = os.path.join(work, f'{key.name}.json')
            with open(path, 'w') as f:
                f.write(bundle_text(bundles[key.key_id]))
            started = time.perf_counter()
            _, totals = decrypt_bundle(private, path)
            decrypt_ms[key.level] = (time.perf_counter() - started) / len(totals) * 1e3
            exact &= totals == plain_totals(days, feeders, 5, key.level, key.layout)

    rate = fetch_s = None
    if with_grpc:
        with tempfile.TemporaryDirectory() as work:
            rate, fetch_s = grpc_run(work, submissions, [dso, tso], registry, feeders)

    one = encrypt(names[0], [dso])
    row = {'meters': meters, 'bits': bits, 'ciphertexts_per_meter_day': dso.layout.ciphertexts,
           'encrypt_packed_ms': round(packed_ms, 2), 'encrypt_packed_phe_r^n_ms': round(packed_standard_ms, 2),
           'encrypt_unpacked_phe_ms': round(unpacked_ms, 1),
           'encrypt_all_both_keys_s': round(encrypt_all_s, 1),
           'aggregate_check_s': round(check_s, 2), 'aggregate_sum_s': round(sum_s, 2),
           'aggregate_total_s': round(check_s + sum_s, 2),
           'decrypt_feeder_day_ms': round(decrypt_ms['feeder'], 1), 'decrypt_zone_day_ms': round(decrypt_ms['zone'], 1),
           'ciphertext_bytes_per_meter_day': sum((c.bit_length() + 7) // 8 for _, cs in one.blocks for c in cs),
           'protobuf_bytes_per_meter_day': len(one.to_proto().SerializeToString()),
           'json_bytes_per_meter_day': len(one.to_json()) + 1,
           'grpc_meter_days_per_s': None if rate is None else round(rate),
           'grpc_first_fetch_s': None if fetch_s is None else round(fetch_s, 2),
           'feeders': len(bundles[dso.key_id]['groups']), 'zones': len(bundles[tso.key_id]['groups']),
           'exact': exact}
    row = complete(row)
    print(f'{meters} meters x 96 slots, {bits}-bit keys ({dso.layout.ciphertexts} ciphertexts per meter-day per key): '
          f'encrypt+sign {packed_ms:.2f} ms packed (phe r^n packed {packed_standard_ms:.1f} ms, unpacked phe '
          f'{unpacked_ms:.0f} ms); aggregator: check {check_s:.2f} s + sum {sum_s:.2f} s for {meters} meter-days '
          f'x 2 keys; decrypt {decrypt_ms["feeder"]:.1f} ms per feeder-day; {row["protobuf_bytes_per_meter_day"]} '
          f'bytes per meter-day (protobuf, one key); exact: {exact}'
          + ('' if rate is None else f'; over gRPC: {rate:.0f} meter-days/s accepted, first fetch {fetch_s:.2f} s'),
          flush=True)
    return row


def run(params, seed):
    """Every [meters, bits] of ``runs``."""
    rows = [one(m, b, seed, params['samples'], params['grpc'] == 'yes' or (params['grpc'] == 'auto' and b == 2048),
                params['unpacked_samples'], profile_day(params))
            for m, b in params['runs']]
    return rows, describe(params)


def describe(params):
    """The report's notes of a run with these parameters."""
    return [f'encryption timed one meter-day at a time: {params["samples"]} meter-days packed (a twentieth of them, '
            f'at least 5, with phe r^n), {params["unpacked_samples"]} unpacked (192 ciphertexts each).',
            'aggregate total s: check (signature, feeder, day and Z*_{n²} checks) + sum (the homomorphic products) '
            'of all meter-days under both keys; decryption includes the range checks.']


def figures(rows, directory):
    fig = figure()
    left, right = fig.subplots(1, 2)
    labels = [f'{r["meters"]:,} meters\n{r["bits"]} bits' for r in rows]
    series = [('packed, DJN (+ signature)', 'encrypt_packed_ms'),
              ('packed, phe r^n (+ signature)', 'encrypt_packed_phe_r^n_ms'),
              ('unpacked, phe: 192 ciphertexts', 'encrypt_unpacked_phe_ms')]
    width = 0.8 / len(series)
    for k, (name, key) in enumerate(series):
        left.bar([i + (k - 1) * width for i in range(len(rows))], [r[key] for r in rows], width, label=name)
    left.set_yscale('log')
    left.set_ylabel('ms per meter-day (log scale)')
    left.set_title('encrypting a meter-day under one key', fontsize=9)
    left.legend(fontsize=7)
    left.set_xticks(range(len(rows)), labels, fontsize=7)
    right.bar(range(len(rows)), [r['aggregate_check_s'] for r in rows], label='check')
    right.bar(range(len(rows)), [r['aggregate_sum_s'] for r in rows], bottom=[r['aggregate_check_s'] for r in rows],
              label='sum')
    right.set_ylabel('seconds')
    right.set_title('aggregator: every meter-day, both keys', fontsize=9)
    right.legend(fontsize=7)
    right.set_xticks(range(len(rows)), labels, fontsize=7)
    for axis in (left, right):
        axis.grid(True, axis='y', which='both', alpha=0.3)
    fig.tight_layout()
    path = f'{directory}/stats.png'
    fig.savefig(path)
    return [('encryption per meter-day and aggregation', path)]
