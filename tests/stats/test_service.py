"""The statistics aggregator as a process over mutual TLS: meters submit through ``stats submit``,
operators fetch through ``stats fetch`` and decrypt; duplicates, wrong operators and late
readings are refused; a released day is frozen and survives a crash of the aggregator."""

import datetime
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mpc_market.common import keys
from mpc_market.mpc.local import free_ports
from mpc_market.stats import paillier
from mpc_market.stats.reference import plain_totals
from mpc_market.stats.release import decrypt_bundle

from helpers import cli

pytestmark = [pytest.mark.slow, pytest.mark.deployment]

TODAY = datetime.datetime.now(datetime.UTC).date()
DAY = (TODAY - datetime.timedelta(days=1)).isoformat()
FEEDERS = {**{f'a{i}': ('F1', 'Z1') for i in range(7)}, **{f'b{i}': ('F2', 'Z1') for i in range(5)}}
LATE = 'a6'                    # registered and mapped, submits only after the day was released


def start_aggregator(config, timeout=60):
    """The aggregator as its own process, logging to a file (a pipe nobody drains could block it)."""
    log_path = f'{config}.log'
    with open(log_path, 'a') as log:
        start = log.tell()  # a restart appends: look only at this run's lines
        proc = subprocess.Popen([sys.executable, '-m', 'mpc_market', 'stats', 'aggregator', '--config', str(config)],
                                stdout=log, stderr=subprocess.STDOUT, text=True)

    def output():
        with open(log_path) as f:
            f.seek(start)
            return f.read()
    deadline = time.monotonic() + timeout
    while 'listening' not in output():
        assert proc.poll() is None and time.monotonic() < deadline, output()
        time.sleep(0.05)
    return proc


@pytest.fixture
def deployment(tmp_path):
    root = tmp_path
    keys.create_ca(str(root / 'keys'))
    keys.create_aggregator(str(root / 'keys'))
    for client in ('submitter', 'dso', 'tso'):
        keys.create_client(str(root / 'keys'), client)
    keys.create_participants(str(root / 'keys'), sorted(FEEDERS))
    (root / 'feeders.csv').write_text('participant,feeder,zone\n' + ''.join(
        f'{m},{f},{z}\n' for m, (f, z) in sorted(FEEDERS.items())))
    rng = random.Random(5)
    plain, lines = {}, ['participant,slot,net_wh']
    for meter in sorted(FEEDERS):
        plain[meter] = [0] * 192
        for slot in range(96):
            net = rng.randint(-4000, 4000)
            plain[meter][slot if net > 0 else 96 + slot] = abs(net)
            lines.append(f'{meter},{slot},{net}')
    (root / 'readings.csv').write_text('\n'.join(lines) + '\n')
    for name, level in (('dso', 'feeder'), ('tso', 'zone')):
        assert cli('stats', 'keygen', '--out', root / 'op', '--name', name, '--level', level).returncode == 0
    port, = free_ports(1)
    (root / 'aggregator.toml').write_text(
        f'[aggregator]\nlisten = "127.0.0.1:{port}"\ndata_dir = "agg"\nkeys = "keys"\nfeeders = "feeders.csv"\n'
        'public_keys = ["op/dso.pub.json", "op/tso.pub.json"]\nmin_cohort = 5\n')
    proc = start_aggregator(root / 'aggregator.toml')
    yield root, f'127.0.0.1:{port}', plain, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def encrypt(root, out, meters, day=DAY):
    args = ['stats', 'encrypt', '--readings', root / 'readings.csv', '--day', day, '--feeders', root / 'feeders.csv',
            '--pubkey', root / 'op/dso.pub.json', '--pubkey', root / 'op/tso.pub.json', '--keys', root / 'keys',
            '--out', root / out]
    for meter in meters:
        args += ['--meter', meter]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr


def fetch(root, address, name, out, client=None):
    return cli('stats', 'fetch', '--aggregator', address, '--keys', root / 'keys', '--pubkey',
               root / f'op/{name}.pub.json',
               '--day', DAY, '--out', root / out, *(['--client', client] if client else []))


def test_submit_fetch_decrypt_over_grpc(deployment):
    root, address, plain, proc = deployment
    first_fetch = fetch(root, address, 'dso', 'too-early')  # before any meter uploaded: refused, nothing frozen
    assert first_fetch.returncode == 1 and 'FAILED_PRECONDITION' in first_fetch.stderr, first_fetch.stderr
    assert 'nothing is frozen' in first_fetch.stderr and not (root / 'too-early').exists()
    on_time = sorted(m for m in FEEDERS if m != LATE)
    encrypt(root, 'days.jsonl', on_time)
    submit = lambda name: cli('stats', 'submit', '--submissions', root / name, '--aggregator', address,  # noqa: E731
                              '--keys', root / 'keys', '--batch', '4')
    result = submit('days.jsonl')
    assert result.returncode == 0 and f'{len(on_time)} of {len(on_time)} meter-days accepted' in result.stdout
    result = submit('days.jsonl')                                    # the same meter-days again
    assert result.returncode == 1 and result.stderr.count('ALREADY_EXISTS') == len(on_time)   # 11 <= 20 shown

    early = cli('stats', 'fetch', '--aggregator', address, '--keys', root / 'keys', '--pubkey',
                root / 'op/dso.pub.json', '--day', TODAY.isoformat(), '--out', root / 'early')
    assert early.returncode == 1 and 'FAILED_PRECONDITION' in early.stderr and 'is released from' in early.stderr
    result = fetch(root, address, 'dso', 'wrong', client='tso')      # the TSO asks for the DSO's aggregates
    assert result.returncode == 1 and 'PERMISSION_DENIED' in result.stderr and not (root / 'wrong').exists()
    result = fetch(root, address, 'dso', 'dso-bundle', client='submitter')
    assert result.returncode == 1 and 'PERMISSION_DENIED' in result.stderr

    accepted = {m: plain[m] for m in on_time}
    for name, level in (('dso', 'feeder'), ('tso', 'zone')):
        result = fetch(root, address, name, f'{name}-bundle')
        assert result.returncode == 0, result.stderr
        private = paillier.load_private(str(root / f'op/{name}.key.json'))
        _, totals = decrypt_bundle(private, str(root / f'{name}-bundle/{name}-{DAY}.aggregates.json'))
        assert totals == plain_totals(accepted, FEEDERS, 5, level, private.public.layout)
        assert [g.name for g in totals] == (['F1', 'F2'] if level == 'feeder' else ['Z1'])
    first = (root / f'dso-bundle/dso-{DAY}.aggregates.json').read_text()

    encrypt(root, 'late.jsonl', [LATE])                              # the day is frozen now
    result = submit('late.jsonl')
    assert result.returncode == 1 and 'already released' in result.stderr

    proc.kill()                                                      # crash; the release is durable
    proc.wait(30)
    proc2 = start_aggregator(root / 'aggregator.toml')
    try:
        assert fetch(root, address, 'dso', 'again').returncode == 0
        assert (root / f'again/dso-{DAY}.aggregates.json').read_text() == first
        encrypt(root, 'other-day.jsonl', [LATE], day=TODAY.isoformat())   # another day is still open
        assert submit('other-day.jsonl').returncode == 0
        encrypt(root, 'future.jsonl', [LATE], day=(TODAY + datetime.timedelta(days=5)).isoformat())
        result = submit('future.jsonl')
        assert result.returncode == 1 and 'has not begun' in result.stderr
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(30)


def test_foreign_client_certificate_is_refused(deployment, tmp_path_factory):
    root, address, _, _ = deployment
    other = tmp_path_factory.mktemp('foreign')
    keys.create_ca(str(other))
    keys.create_client(str(other), 'dso')
    os.makedirs(other / 'ca', exist_ok=True)
    (other / 'ca' / 'ca.pem').write_bytes((root / 'keys/ca/ca.pem').read_bytes())   # trusts the real CA
    started = time.monotonic()
    result = cli('stats', 'fetch', '--aggregator', address, '--keys', other, '--pubkey', root / 'op/dso.pub.json',
                 '--day', DAY, '--out', root / 'x')
    assert result.returncode == 1 and 'UNAVAILABLE' in result.stderr and time.monotonic() - started < 120


def test_bad_aggregator_config(tmp_path):
    (tmp_path / 'a.toml').write_text('[aggregator]\nlisten = "127.0.0.1:1"\ndata_dir = "d"\nkeys = "k"\n'
                                     'feeders = "f.csv"\npublic_keys = ["x.json"]\nmin_cohort = 1\n')
    result = cli('stats', 'aggregator', '--config', tmp_path / 'a.toml')
    assert result.returncode == 2 and 'a.toml:7: min_cohort' in result.stderr and 'Traceback' not in result.stderr
    assert not (tmp_path / 'd').exists()


def test_aggregator_turns_away_oversize_batches_and_keeps_its_state_private(deployment):
    """Flooding the aggregator: a batch over 256 meter-days is refused before any check, and its
    state directory is 0700 with 0600 files whatever the caller's umask."""
    import stat

    import grpc

    from mpc_market.net.tls import client_credentials, secure_channel
    from mpc_market.rpc import market_pb2, market_pb2_grpc
    root, address, _, _ = deployment
    stub = market_pb2_grpc.StatsAggregatorStub(secure_channel(
        address, client_credentials(str(root / 'keys'), 'clients', 'submitter'), 'aggregator'))
    batch = market_pb2.EncryptedDayBatch(days=[market_pb2.EncryptedDay(meter='a0', day=DAY)] * 257)
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitEncryptedDays(batch, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and 'at most 256' in err.value.details()
    for directory, _, files in os.walk(root / 'agg'):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
        for name in files:
            assert stat.S_IMODE(os.stat(os.path.join(directory, name)).st_mode) == 0o600, name


def test_unknown_meter_and_bad_signature_get_one_answer(deployment):
    """No registry oracle: an unregistered meter and a registered one with a forged signature get
    byte-identical outcomes over gRPC (the aggregator once said NOT_FOUND "not a registered
    participant" to the first and UNAUTHENTICATED to the second), after the same work."""
    import time as clock

    from cryptography.hazmat.primitives.asymmetric import ed25519

    from mpc_market.common.errors import Refused
    from mpc_market.net.tls import client_credentials, secure_channel
    from mpc_market.rpc import market_pb2, market_pb2_grpc
    from mpc_market.stats.submission import encrypt_day
    root, address, plain, _ = deployment
    public = paillier.load_public_keys([str(root / 'op/dso.pub.json'), str(root / 'op/tso.pub.json')])
    stranger = ed25519.Ed25519PrivateKey.generate()
    a0 = keys.load_participant_key(str(root / 'keys'), 'a0')

    def day(meter, key):
        return encrypt_day(meter, DAY, 'F1', plain['a0'], public, key)
    unknown = day('zed', stranger)                           # nobody registered zed
    unknown_with_a_real_key = day('zed', a0)
    forged = day('a0', stranger)                             # a0 is registered, the signature is not its
    stub = market_pb2_grpc.StatsAggregatorStub(secure_channel(
        address, client_credentials(str(root / 'keys'), 'clients', 'submitter'), 'aggregator'))

    def outcome(*days):
        reply = stub.SubmitEncryptedDays(market_pb2.EncryptedDayBatch(days=[d.to_proto() for d in days]), timeout=30)
        return [o.SerializeToString() for o in reply.outcomes]
    answers = outcome(unknown) + outcome(forged) + outcome(unknown_with_a_real_key) + outcome(forged, unknown)
    assert len(set(answers)) == 1, answers
    first = market_pb2.EncryptedDayOutcome.FromString(answers[0])
    assert not first.accepted and first.code == 'UNAUTHENTICATED'
    assert 'a0' not in first.error and 'zed' not in first.error
    assert outcome(day('a0', a0)) == [market_pb2.EncryptedDayOutcome(accepted=True).SerializeToString()]

    # equal work: the unknown meter is checked against a dummy key (a dictionary miss was ~100x faster)
    registry = keys.load_registry(str(root / 'keys' / 'registry.json'))

    def seconds(submission, rounds=200):
        start = clock.perf_counter()
        for _ in range(rounds):
            try:
                submission.verify(registry)
            except Refused:
                pass
        return clock.perf_counter() - start
    # interleaved, best of 7 each: a loaded machine (the suite's other worker) slows both alike
    best = {'unknown': float('inf'), 'forged': float('inf')}
    for _ in range(7):
        for name, submission in (('unknown', unknown), ('forged', forged)):
            best[name] = min(best[name], seconds(submission))
    ratio = best['unknown'] / best['forged']
    assert 0.5 < ratio < 2, ratio
