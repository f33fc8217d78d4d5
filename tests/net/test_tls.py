"""The gRPC API: generated stubs match protos/, and mutual TLS works with `mpc-market keys` material."""

import os
import re
import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from google.protobuf import descriptor_pb2

from mpc_market.common import keys
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import REPO, read_bytes

ROOT = REPO
PROTO = 'mpc_market/rpc/market.proto'


def test_generated_stubs_are_current(tmp_path):
    descriptor_set = tmp_path / 'market.pb'
    subprocess.run([sys.executable, '-m', 'grpc_tools.protoc', '-I', os.path.join(ROOT, 'protos'),
                    f'--descriptor_set_out={descriptor_set}', '--python_out', str(tmp_path),
                    '--grpc_python_out', str(tmp_path), PROTO], check=True)
    fresh = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file[0]

    def drop_json_names(messages):  # the Python generator leaves json_name out
        for message in messages:
            for field in message.field:
                field.ClearField('json_name')
            drop_json_names(message.nested_type)
    drop_json_names(fresh.message_type)
    assert fresh.SerializeToString() == market_pb2.DESCRIPTOR.serialized_pb, \
        'protos/ changed: regenerate with python -m grpc_tools.protoc -Iprotos --python_out=. ' \
        '--grpc_python_out=. ' + PROTO

    def without_versions(text):
        return re.sub(r".*(VERSION|Version).*\n", '', text)
    with open(os.path.join(ROOT, 'mpc_market', 'rpc', 'market_pb2_grpc.py')) as f:
        committed = f.read()
    assert without_versions((tmp_path / 'mpc_market' / 'rpc' / 'market_pb2_grpc.py').read_text()) == \
        without_versions(committed)


class StatusOnlyNode(market_pb2_grpc.NodeServicer):
    def RoundStatus(self, request, context):
        return market_pb2.RoundState(round_id=request.round_id, state=market_pb2.RoundState.OPEN, accepted=3)


@pytest.fixture(scope='module')
def tls_server(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('keys'))
    keys.create_ca(d)
    for i in range(2):
        keys.create_node(d, i)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    market_pb2_grpc.add_NodeServicer_to_server(StatusOnlyNode(), server)
    credentials = grpc.ssl_server_credentials([(read_bytes(d, 'nodes', 'node0.key'),
                                                read_bytes(d, 'nodes', 'node0.pem'))],
                                              root_certificates=read_bytes(d, 'ca', 'ca.pem'), require_client_auth=True)
    port = server.add_secure_port('127.0.0.1:0', credentials)
    server.start()
    yield d, port
    server.stop(None)


def _call(port, credentials):
    with grpc.secure_channel(f'localhost:{port}', credentials) as channel:
        return market_pb2_grpc.NodeStub(channel).RoundStatus(market_pb2.RoundRef(round_id='r1'), timeout=5)


def test_mutual_tls_between_nodes(tls_server):
    d, port = tls_server
    credentials = grpc.ssl_channel_credentials(read_bytes(d, 'ca', 'ca.pem'), read_bytes(d, 'nodes', 'node1.key'),
                                               read_bytes(d, 'nodes', 'node1.pem'))
    state = _call(port, credentials)
    assert state.round_id == 'r1' and state.state == market_pb2.RoundState.OPEN and state.accepted == 3


def test_clients_without_the_right_trust_are_refused(tls_server, tmp_path):
    d, port = tls_server
    with pytest.raises(grpc.RpcError):  # no client certificate
        _call(port, grpc.ssl_channel_credentials(read_bytes(d, 'ca', 'ca.pem')))
    other = str(tmp_path / 'other')
    keys.create_ca(other)
    keys.create_node(other, 0)
    with pytest.raises(grpc.RpcError):  # a certificate from another CA
        _call(port, grpc.ssl_channel_credentials(read_bytes(d, 'ca', 'ca.pem'), read_bytes(other, 'nodes', 'node0.key'),
                                                 read_bytes(other, 'nodes', 'node0.pem')))
    with pytest.raises(grpc.RpcError):  # a client that does not trust the nodes' CA
        _call(port, grpc.ssl_channel_credentials(read_bytes(other, 'ca', 'ca.pem'), read_bytes(d, 'nodes', 'node1.key'),
                                                 read_bytes(d, 'nodes', 'node1.pem')))
