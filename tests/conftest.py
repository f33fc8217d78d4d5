"""Shared fixtures of the whole suite."""

import os
from concurrent import futures

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from mpc_market.common import keys
from mpc_market.net.node_intake import NodeService, RateLimiter, broker_only
from mpc_market.net.store import Store, now_ms
from mpc_market.net.submit import Submitter, load_endpoints, tls_credentials
from mpc_market.rpc import market_pb2_grpc

from helpers import TOML, Market, SharedDeployment, SignedParams, node_fault_env, read_bytes


@pytest.fixture
def node_fault(monkeypatch):
    """Set a node fault for every process the test starts: ``node_fault('fail', 1)``."""
    def set_fault(kind, index, seconds=None):
        for key, value in node_fault_env(kind, index, seconds).items():
            monkeypatch.setenv(key, value)
    return set_fault


@pytest.fixture
def market(tmp_path):
    markets = []

    def start(**kwargs):
        markets.append(Market(tmp_path, **kwargs))
        return markets[-1]
    yield start
    for m in markets:
        m.stop()


@pytest.fixture(scope='session')
def shared_deployment(tmp_path_factory):
    """This worker's one running deployment for the tests that only need one (see SharedDeployment)."""
    shared = SharedDeployment(str(tmp_path_factory.mktemp('shared')))
    yield shared
    shared.stop()


@pytest.fixture
def shared_market(tmp_path, shared_deployment):
    """``shared_market(round_ids, **Market kwargs)``: a Market whose rounds run on the shared deployment."""
    def start(round_ids, **kwargs):
        return Market(tmp_path, shared=shared_deployment, round_ids=round_ids, **kwargs)
    return start


@pytest.fixture
def node_services(tmp_path):
    """Three node submission services over mutual TLS (no broker, no clearing), as ``serve`` builds them."""
    d = str(tmp_path / 'keys')
    keys.create_ca(d)
    for i in range(3):
        keys.create_node(d, i)
    keys.create_client(d, 'submitter')
    keys.create_participants(d, ['alice', 'bob', 'carol'])
    registry = keys.load_registry(os.path.join(d, 'registry.json'))
    servers, stores, addresses = [], [], []
    gate_closure = now_ms() + 60_000  # one round specification for every node, as the broker sends it
    for i in range(3):
        store = Store(str(tmp_path / f'node{i}.db'))
        store.open_round('r1', [0, 1], gate_closure, TOML)
        signing = serialization.load_pem_private_key(read_bytes(d, 'nodes', f'node{i}.sign.key'), None)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=[broker_only(i)])  # as serve()
        market_pb2_grpc.add_NodeServicer_to_server(
            NodeService(i, store, registry, signing, limiter=RateLimiter(rate=1, burst=8)), server)
        credentials = grpc.ssl_server_credentials([(read_bytes(d, 'nodes', f'node{i}.key'),
                                                    read_bytes(d, 'nodes', f'node{i}.pem'))],
                                                  root_certificates=read_bytes(d, 'ca', 'ca.pem'),
                                                  require_client_auth=True)
        port = server.add_secure_port('127.0.0.1:0', credentials)
        server.start()
        servers.append(server)
        stores.append(store)
        addresses.append(f'localhost:{port}')
    submitter = Submitter(load_endpoints(d, addresses), tls_credentials(d), params_sha256=SignedParams(stores[0]))
    yield d, submitter, stores, servers, addresses
    submitter.close()
    for server in servers:
        server.stop(None)
