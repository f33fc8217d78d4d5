"""Attacks on a running deployment (broker + 3 node processes over mutual TLS) as one node would
run them, and the file modes of every process's private state."""

import hashlib
import os
import sqlite3
import stat

import grpc
import pytest

from mpc_market.common import keys
from mpc_market.net.client import BrokerClient
from mpc_market.net.messages import results_request_bytes
from mpc_market.net.store import now_ms
from mpc_market.net.tls import secure_channel
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import read_bytes

pytestmark = [pytest.mark.slow, pytest.mark.deployment]


def _node_as(m, index, keys_subdir, name):
    """A stub for node index, connecting with any certificate of the deployment (a node's too)."""

    credentials = grpc.ssl_channel_credentials(read_bytes(m.keys, 'ca', 'ca.pem'),
                                               read_bytes(m.keys, keys_subdir, f'{name}.key'),
                                               read_bytes(m.keys, keys_subdir, f'{name}.pem'))
    address = BrokerClient(m.broker, m.keys).status(m.round).node_addresses[index]
    return market_pb2_grpc.NodeStub(secure_channel(address, credentials, f'node{index}'))


def _request(m, participant, node_index, signer=None):
    key = keys.load_participant_key(m.keys, signer or participant)
    stamp, nonce = now_ms(), os.urandom(16).hex()
    return market_pb2.ResultsRequest(round_id=m.round, participant=participant, unix_ms=stamp, node_index=node_index,
                                     nonce=nonce, signature=key.sign(results_request_bytes(m.round, participant,
                                                                                           node_index, nonce, stamp)))


def _code(call, *args):
    try:
        call(*args, timeout=10)
    except grpc.RpcError as exc:
        return exc.code(), exc.details()
    return None


def _stored_shares(m, index, participant):
    db = sqlite3.connect(os.path.join(m.deployment.dir, f'node{index}', 'node.db'))
    try:
        return bytes(db.execute('SELECT shares FROM results WHERE round_id = ? AND participant = ?',
                                (m.round, participant)).fetchone()[0])
    finally:
        db.close()


def _assert_private(root):
    for directory, _dirs, files in os.walk(root):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700, directory
        for name in files:
            path = os.path.join(directory, name)
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, path


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)  # the daemons must not rely on the caller's umask (the shared ones start under it too)
    yield
    os.umask(old)


def test_a_node_cannot_read_another_participants_results(shared_market, loose_umask):
    m = shared_market(['attack'], participants=4)
    for name in ('broker', 'node0', 'node1', 'node2'):
        _assert_private(os.path.join(m.deployment.dir, name))
    m.open()
    m.submit_individually(m.participants)
    m.close_and_wait()
    # node 1's operator holds node 1's certificate and the request p01 sent to node 1.
    seen_by_node1 = _request(m, 'p01', 1)
    for other in (0, 2):  # replayed at another node: refused, it names node 1
        code = _code(_node_as(m, other, 'nodes', 'node1').FetchResults, seen_by_node1)
        assert code == (grpc.StatusCode.UNAUTHENTICATED, f'node {other}: results request not authenticated')
    assert _code(_node_as(m, 1, 'nodes', 'node1').FetchResults, seen_by_node1) is None  # its one use
    code = _code(_node_as(m, 1, 'nodes', 'node1').FetchResults, seen_by_node1)
    assert code[0] == grpc.StatusCode.ALREADY_EXISTS  # single use
    # Even a request for node 0 that leaks to node 1 yields only ciphertext sealed to p01.
    leaked = _request(m, 'p01', 0)
    reply = _node_as(m, 0, 'nodes', 'node1').FetchResults(leaked, timeout=10)
    plain = _stored_shares(m, 0, 'p01')
    assert reply.status == 'cleared' and len(reply.shares) == len(plain) + 16
    assert plain not in reply.shares and hashlib.sha256(reply.shares).digest() != hashlib.sha256(plain).digest()
    for chunk in range(0, len(plain) - 16, 16):
        assert plain[chunk:chunk + 16] not in reply.shares  # no share element in the clear
    # Registry enumeration: an unknown participant and a forged signature get the same answer.
    unknown = _code(_node_as(m, 0, 'clients', 'submitter').FetchResults, _request(m, 'p01', 0, signer='p02'))
    forged = market_pb2.ResultsRequest()
    forged.CopyFrom(_request(m, 'p01', 0))
    forged.participant = 'nobody'
    assert _code(_node_as(m, 0, 'clients', 'submitter').FetchResults, forged) == unknown
    # The participant itself still gets exact results, and every state directory stayed private.
    m.check_results()
    for name in ('broker', 'node0', 'node1', 'node2'):
        _assert_private(os.path.join(m.deployment.dir, name))
