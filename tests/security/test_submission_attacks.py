"""Attacks on the submission path of a node: forged envelopes, ordering races, oracles, names."""

import json
import os

import grpc
import pytest

from mpc_market.common import keys
from mpc_market.common.errors import KeyFileError, Malformed
from mpc_market.common.names import is_name, path_token
from mpc_market.mpc import field as ff
from mpc_market.net.store import Store, now_ms
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import TOML, cli, order_values, sealed


def _packages(values):
    return [s.astype('<u4').tobytes() for s in ff.share_values(values[None], 1, 3)]


def _submit(stub, envelope_bytes, signature, package, participant='alice', node_index=0):
    try:
        return stub.SubmitOrder(market_pb2.Submission(round_id='r1', participant=participant, envelope=envelope_bytes,
                                                      signature=signature, node_index=node_index, package=package),
                                timeout=10), None
    except grpc.RpcError as exc:
        return None, (exc.code(), exc.details())


def test_signed_bytes_are_the_stored_bytes(node_services):
    """An envelope re-encoded with an extra key, a repeated key, a wrong type or other spacing
    keeps a valid signature over its canonical form, and is still refused: nodes store and
    forward exactly the bytes that were signed."""
    d, submitter, stores, _, _ = node_services
    alice = keys.load_participant_key(d, 'alice')
    packages = _packages(order_values([('alice', 0, 'sell', 300, '0.12')], 'alice'))
    env, sig = sealed(alice, 'r1', 'alice', packages, stores[0])
    stub = market_pb2_grpc.NodeStub(submitter.channels[0])
    canonical = env.to_json()
    fields = json.loads(canonical)
    variants = {
        'extra key': json.dumps(dict(fields, note='x'), sort_keys=True, separators=(',', ':')),
        'repeated key': canonical[:-1] + ',"seq":' + str(env.seq) + '}',
        'seq as a string': json.dumps(dict(fields, seq=str(env.seq)), sort_keys=True, separators=(',', ':')),
        'other spacing': json.dumps(fields, sort_keys=True),
        'keys reordered': json.dumps(dict(reversed(list(fields.items()))), separators=(',', ':')),
        'deeply nested': canonical[:-1] + ',"x":' + '[' * 100000 + ']' * 100000 + '}',
    }
    for name, text in variants.items():
        _, error = _submit(stub, text.encode(), sig, packages[0])
        assert error is not None and error[0] == grpc.StatusCode.INVALID_ARGUMENT, (name, error)
        assert 'malformed envelope' in error[1], (name, error)
    assert stores[0].count('r1') == 0
    receipt, error = _submit(stub, canonical.encode(), sig, packages[0])
    assert error is None
    assert stores[0].submissions('r1', 'order')['alice'][1] == canonical.encode()  # exactly the signed bytes


def test_concurrent_resubmissions_leave_every_node_with_the_same_envelope(node_services):
    """Two resubmissions reach the nodes in opposite orders; each node keeps the one with the
    higher sequence number, so the participant is not dropped as 'missing' at clearing."""
    d, submitter, stores, _, _ = node_services
    alice = keys.load_participant_key(d, 'alice')
    first = _packages(order_values([('alice', 0, 'sell', 300, '0.12')], 'alice'))
    second = _packages(order_values([('alice', 0, 'sell', 200, '0.13')], 'alice'))
    env_a, sig_a = sealed(alice, 'r1', 'alice', first, stores[0], seq=1000)
    env_b, sig_b = sealed(alice, 'r1', 'alice', second, stores[0], seq=2000)
    stubs = [market_pb2_grpc.NodeStub(c) for c in submitter.channels]
    orders = {0: ['a', 'b'], 1: ['b', 'a'], 2: ['b', 'a']}
    sent = {'a': (env_a, sig_a, first), 'b': (env_b, sig_b, second)}
    for node, sequence in orders.items():
        for which in sequence:
            env, sig, packages = sent[which]
            _, error = _submit(stubs[node], env.to_json().encode(), sig, packages[node], node_index=node)
            if which == 'a' and sequence[0] == 'b':
                assert error[0] == grpc.StatusCode.ALREADY_EXISTS and 'superseded' in error[1]
            else:
                assert error is None, error
    held = {store.submissions('r1', 'order')['alice'][0] for store in stores}
    assert held == {env_b.nonce}


def test_round_status_and_registry_are_not_oracles(node_services):
    """A submitter cannot watch live accepted counts, and cannot tell an unregistered name from
    a registered one with a bad signature."""
    d, submitter, stores, _, _ = node_services
    stub = market_pb2_grpc.NodeStub(submitter.channels[1])
    for method in (stub.RoundStatus, stub.SettleRound, stub.CloseRound):  # status, and no phase at a client's word
        with pytest.raises(grpc.RpcError) as err:
            method(market_pb2.RoundRef(round_id='r1'), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    bob = keys.load_participant_key(d, 'bob')
    packages = _packages(order_values([('alice', 0, 'sell', 300, '0.12')], 'alice'))
    answers = []
    for participant in ('alice', 'zed'):  # registered (signed by bob) and unregistered
        env, sig = sealed(bob, 'r1', participant, packages, stores[0])
        _, error = _submit(market_pb2_grpc.NodeStub(submitter.channels[0]), env.to_json().encode(), sig, packages[0],
                           participant=participant)
        answers.append((error[0], error[1].replace(participant, 'NAME')))
    assert answers[0] == answers[1]


@pytest.mark.parametrize('bad', ['../etc', '/tmp/x', '.', '..', '', '-rf', 'a/b', 'x' * 65, 'a\nb', 'r1;DROP'])
def test_hostile_names_are_refused_at_every_entry_point(tmp_path, bad):
    assert not is_name(bad)
    store = Store(str(tmp_path / 'node.db'))
    with pytest.raises(Malformed):
        store.open_round(bad, [0], now_ms() + 10_000, TOML)
    store.close()
    with pytest.raises(KeyFileError):
        keys.create_participants(str(tmp_path / 'k'), [bad])
    with pytest.raises(KeyFileError):
        keys.create_client(str(tmp_path / 'k'), bad)
    if bad:  # on the command line '' means the latest round
        proc = cli('round', 'status', '--broker', '127.0.0.1:1', '--keys', tmp_path, '--round', bad)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
        assert 'not 1-64' in proc.stderr or bad.startswith('-'), proc.stderr
    assert not list(tmp_path.glob('**/etc')) and not (tmp_path / 'x').exists()


def test_server_names_are_reserved_for_servers(tmp_path):
    keys.create_ca(str(tmp_path))
    # gRPC's name check ignores case and trailing dots: 'BROKER' passes for 'broker'
    for name in ('broker', 'aggregator', 'node0', 'node12', 'Broker', 'broker.', 'BROKER..', 'NODE0', 'node0.',
                 'Node12.', 'Aggregator', 'aggregator.'):
        with pytest.raises(KeyFileError):
            keys.create_client(str(tmp_path), name)
        proc = cli('keys', 'client', '--dir', tmp_path, '--name', name)
        assert proc.returncode == 2 and 'cannot name a client certificate' in proc.stderr, (name, proc.stderr)
    assert not os.path.exists(tmp_path / 'clients')
    for name in ('brokerage', 'node', 'node0x', 'my.broker', 'aggregator2', 'operator'):
        keys.create_client(str(tmp_path), name)


def test_a_client_certificate_named_like_a_server_cannot_pass_for_it(node_services):
    """Certificates an older key tool issued as 'Broker', 'broker.' or 'BROKER' (client
    authentication only): a node refuses them round control, since servers compare names
    exactly, and they cannot serve as the broker, since clients require server authentication."""
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    from mpc_market.net import tls
    d, _, _, _, addresses = node_services
    for name in ('Broker', 'broker.', 'BROKER'):
        keys._issue(d, 'clients', name)  # past create_client's rule
        channel = tls.secure_channel(addresses[0], tls.client_credentials(d, 'clients', name), 'node0')
        with pytest.raises(grpc.RpcError) as err:
            market_pb2_grpc.NodeStub(channel).RoundStatus(market_pb2.RoundRef(round_id='r1'), timeout=10)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED and f'not {name}' in err.value.details()
        channel.close()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        port = server.add_secure_port('127.0.0.1:0', tls.server_credentials(d, 'clients', name))
        server.start()
        channel = tls.secure_channel(f'127.0.0.1:{port}', tls.client_credentials(d, 'clients', 'submitter'), 'broker')
        with pytest.raises(grpc.RpcError) as err:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        channel.close()
        server.stop(None)


def test_run_directories_are_named_by_a_hash():
    token = path_token('round-1')
    assert len(token) == 24 and all(c in '0123456789abcdef' for c in token)
