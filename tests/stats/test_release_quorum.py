"""A day is released only with a quorum (issue 22, problem 3): one ``stats fetch`` before the
meters uploaded used to freeze a day of 0 groups, every later meter-day was refused as late and
``stats decrypt`` wrote an empty CSV with exit 0. Now a fetch below the quorum is refused and
freezes nothing, and decrypting (or aggregating offline) an empty release writes nothing."""

import datetime
import json

import grpc
import pytest

from mpc_market.common import keys
from mpc_market.common.errors import InputError
from mpc_market.rpc import market_pb2
from mpc_market.stats import paillier
from mpc_market.stats.service import AggregatorConfig, AggregatorService, AggregatorStore, load_aggregator_config
from mpc_market.stats.submission import encrypt_day

from helpers import cli

DAY = (datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=1)).isoformat()
SLOTS = 4
FEEDERS = {**{f'a{i}': ('F1', 'Z1') for i in range(5)}, **{f'b{i}': ('F2', 'Z1') for i in range(3)}}


class Aborted(Exception):
    pass


class Context:
    """What FetchAggregates reads of a gRPC context: the client certificate's name, abort."""

    def __init__(self, name):
        self.name = name

    def auth_context(self):
        return {'x509_common_name': [self.name.encode()]}

    def abort(self, code, details):
        raise Aborted(code, details)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp('quorum')
    keys.create_participants(str(root), sorted(FEEDERS))
    dso, dso_private = paillier.generate('dso', 'feeder', 2048, SLOTS, 1000, 100, 4)
    tso, _ = paillier.generate('tso', 'zone', 2048, SLOTS, 1000, 100, 4)
    registry = keys.load_registry(str(root / 'registry.json'))
    days = {m: encrypt_day(m, DAY, FEEDERS[m][0], [7] * dso.layout.values, [dso, tso],
                           keys.load_participant_key(str(root), m)) for m in sorted(FEEDERS)}
    paillier.write_key_pair(str(root / 'op'), dso, dso_private)
    return {'root': root, 'keys': [dso, tso], 'registry': registry, 'days': days}


def service(world, tmp_path, min_meters=5):
    config = AggregatorConfig(path='a.toml', listen='127.0.0.1:1', data_dir=str(tmp_path), keys='', feeders='',
                              public_keys=[], min_cohort=5, min_meters=min_meters)
    store = AggregatorStore(str(tmp_path / 'aggregator.db'))
    return AggregatorService(config, store, world['keys'], world['registry'], FEEDERS), store


def submit(svc, world, meters):
    reply = svc._submit_days(market_pb2.EncryptedDayBatch(days=[world['days'][m].to_proto() for m in meters]))
    return [o.error for o in reply.outcomes]


def fetch(svc, world, name='dso'):
    key = next(k for k in world['keys'] if k.name == name)
    return svc.FetchAggregates(market_pb2.AggregatesRequest(day=DAY, key_id=key.key_id), Context(name))


def test_a_fetch_before_any_upload_freezes_nothing(world, tmp_path):
    svc, store = service(world, tmp_path)
    try:
        with pytest.raises(Aborted) as refused:
            fetch(svc, world)                                    # before any meter uploaded
        code, details = refused.value.args
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert '0 meter-days received' in details and 'min_meters = 5' in details and 'nothing is frozen' in details
        assert submit(svc, world, ['b0', 'b1', 'b2', 'a0', 'a1']) == [''] * 5   # later uploads still count
        with pytest.raises(Aborted) as refused:                  # 5 meter-days, but no feeder of 5
            fetch(svc, world, 'tso')
        assert 'no feeder has the minimum cohort of 5 meters' in refused.value.args[1]
        assert 'F1 2' in refused.value.args[1] and 'F2 3' in refused.value.args[1]
        assert submit(svc, world, ['a2', 'a3', 'a4']) == [''] * 3
        bundle = json.loads(fetch(svc, world).bundle)            # a later fetch releases them all
        assert bundle['submitted'] == 8 and [g['name'] for g in bundle['groups']] == ['F1']
        assert [g['meters'] for g in bundle['groups']] == [5]
        assert 'already released' in submit(svc, world, ['a0'])[0]             # now the day is frozen
    finally:
        store.close()


def test_the_quorum_is_configurable(world, tmp_path):
    svc, store = service(world, tmp_path, min_meters=8)
    try:
        submit(svc, world, [f'a{i}' for i in range(5)])          # F1 has its cohort, the quorum is 8
        with pytest.raises(Aborted) as refused:
            fetch(svc, world)
        assert '5 meter-days received, the quorum is min_meters = 8' in refused.value.args[1]
        submit(svc, world, ['b0', 'b1', 'b2'])
        assert [g['name'] for g in json.loads(fetch(svc, world).bundle)['groups']] == ['F1']
    finally:
        store.close()


def test_min_meters_in_aggregator_toml(tmp_path):
    base = ('[aggregator]\nlisten = "127.0.0.1:1"\ndata_dir = "d"\nkeys = "k"\nfeeders = "f.csv"\n'
            'public_keys = ["x.json"]\nmin_cohort = 7\n')
    (tmp_path / 'a.toml').write_text(base)
    assert load_aggregator_config(str(tmp_path / 'a.toml')).min_meters == 7      # default: min_cohort
    (tmp_path / 'a.toml').write_text(base + 'min_meters = 45\n')
    assert load_aggregator_config(str(tmp_path / 'a.toml')).min_meters == 45
    (tmp_path / 'a.toml').write_text(base + 'min_meters = 0\n')
    with pytest.raises(InputError, match='a.toml:8: min_meters'):
        load_aggregator_config(str(tmp_path / 'a.toml'))
    (tmp_path / 'a.toml').write_text(base + 'min_meter = 45\n')
    with pytest.raises(InputError, match='unknown key.*min_meters'):
        load_aggregator_config(str(tmp_path / 'a.toml'))


def test_decrypt_and_aggregate_refuse_an_empty_release(world, tmp_path):
    root = world['root']
    dso = world['keys'][0]
    empty = {'format': 'mpc-market/aggregates/v1', 'day': DAY, 'key_id': dso.key_id, 'key_name': 'dso',
             'level': 'feeder', 'min_cohort': 5, 'submitted': 0, 'groups': [], 'refused': [], 'noise': None}
    (tmp_path / 'empty.json').write_text(json.dumps(empty))
    proc = cli('stats', 'decrypt', '--key', root / 'op/dso.key.json', '--aggregates', tmp_path / 'empty.json',
               '--out', tmp_path / 'report')
    assert proc.returncode == 1 and 'no feeder aggregate' in proc.stderr and 'nothing written' in proc.stderr
    assert not (tmp_path / 'report').exists()

    (tmp_path / 'feeders.csv').write_text('participant,feeder,zone\n' + ''.join(
        f'{m},{f},{z}\n' for m, (f, z) in sorted(FEEDERS.items())))
    (tmp_path / 'days.jsonl').write_text(''.join(world['days'][m].to_json() + '\n' for m in ('b0', 'b1', 'b2')))
    proc = cli('stats', 'aggregate', '--submissions', tmp_path / 'days.jsonl', '--feeders', tmp_path / 'feeders.csv',
               '--registry', root / 'registry.json', '--pubkey', root / 'op/dso.pub.json', '--day', DAY,
               '--out', tmp_path / 'agg')
    assert proc.returncode == 1 and 'no feeder has the minimum cohort of 5' in proc.stderr, proc.stderr
    assert 'F2 3' in proc.stderr and not (tmp_path / 'agg').exists()
