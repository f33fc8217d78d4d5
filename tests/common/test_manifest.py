"""The deployment manifest and the trusted round: what a client believes, in-process.

The same attacks over real processes and TLS (a lying broker proxy) are in
tests/security/test_lying_broker.py; here every way a round state can lie is checked against
trusted_round directly, with the nodes' real signing keys.
"""

import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_market.common import keys
from mpc_market.common.errors import KeyFileError, Tampered
from mpc_market.common.manifest import Manifest, load_manifest, manifest_from_keys, write_manifest
from mpc_market.net import messages
from mpc_market.net.store import now_ms
from mpc_market.net.trusted import UntrustedRound, trusted_round
from mpc_market.rpc import market_pb2

from helpers import TOML, cli, run_examples

ADDRESSES = ['127.0.0.1:7301', '127.0.0.1:7302', '127.0.0.1:7303']


@pytest.fixture(scope='module')
def deployment(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('manifest') / 'keys')
    keys.create_ca(d)
    for i in range(3):
        keys.create_node(d, i)
    write_manifest(d, manifest_from_keys(d, [[a] for a in ADDRESSES]))
    return d, load_manifest(d), [keys.load_node_signing_key(d, i) for i in range(3)]


def honest_state(signing_keys, market=TOML, round_id='r1', gate_closure_ms=None, nodes=3):
    params = messages.RoundParams.of(round_id, [0, 1], market, gate_closure_ms or now_ms() + 60_000, 0, 0, '', nodes)
    return market_pb2.RoundState(
        round_id=round_id, state=market_pb2.RoundState.OPEN, slots=[0, 1], market_toml=market,
        gate_closure_unix_ms=params.gate_closure_ms, node_addresses=ADDRESSES, params=params.to_json(),
        params_signatures=[market_pb2.NodeSignature(node_index=i, signature=k.sign(params.canonical()))
                           for i, k in enumerate(signing_keys)])


def test_an_honest_round_is_trusted(deployment):
    _, manifest, signing_keys = deployment
    trusted = trusted_round(honest_state(signing_keys), manifest, 'r1')
    assert trusted.round_id == 'r1' and trusted.slots == [0, 1] and list(trusted.addresses) == ADDRESSES
    assert [e.index for e in trusted.endpoints()] == [0, 1, 2] and manifest.threshold == 1
    trusted.open_for_orders()


def lie(state, **changes):
    edited = market_pb2.RoundState()
    edited.CopyFrom(state)
    for field, value in changes.items():
        if field in ('node_addresses', 'params_signatures', 'slots'):
            del getattr(edited, field)[:]
            getattr(edited, field).extend(value)
        else:
            setattr(edited, field, value)
    return edited


def test_every_lie_of_a_broker_about_a_round_is_refused(deployment):
    """The finding: a broker listing 2 of 3 nodes (t drops), none (results 'signed by all 0'),
    an edited market text (a buyer's limit exceeded), edited parameters, another round's state."""
    _, manifest, signing_keys = deployment
    state = honest_state(signing_keys)
    shifted = TOML.replace('0.', '0.0', 1) if '0.' in TOML else TOML + '\n'
    other = honest_state(signing_keys, round_id='r0')
    edited_params = json.loads(state.params)
    edited_params['gate_closure_ms'] += 1
    cases = {
        'two of three nodes': (lie(state, node_addresses=ADDRESSES[:2]), 'names 2 nodes'),
        'no node': (lie(state, node_addresses=[]), 'names 0 nodes'),
        'an unpinned address': (lie(state, node_addresses=ADDRESSES[:2] + ['evil.example:7301']), 'pins'),
        'no signatures': (lie(state, params_signatures=[]), 'has not signed'),
        'two signatures': (lie(state, params_signatures=state.params_signatures[:2]), 'node 2 has not signed'),
        'another market text': (lie(state, market_toml=shifted), 'market text'),
        'other slots shown': (lie(state, slots=[0, 1, 2]), 'slots'),
        'edited parameters': (lie(state, params=json.dumps(edited_params, sort_keys=True, separators=(',', ':'))
                                  .encode()), 'bad signature'),
        'no parameters': (lie(state, params=b''), 'no round parameters'),
        'garbage parameters': (lie(state, params=b'[' * 5000), 'not JSON|wrong type'),
        "another round's state": (lie(other, round_id='r1'), 'signed the parameters of round'),
        'another round for the one asked': (other, 'answered with round'),
    }
    for shown, reason in cases.values():
        with pytest.raises(UntrustedRound, match=reason):
            trusted_round(shown, manifest, 'r1')
    # parameters signed by nodes of a 5-node deployment do not fit this 3-node manifest
    with pytest.raises(UntrustedRound, match='5 nodes|node'):
        trusted_round(honest_state(signing_keys, nodes=5), manifest, 'r1')
    # a replayed state of a round whose signed gate closure has passed is no open round
    with pytest.raises(UntrustedRound, match='gate closure'):
        trusted_round(honest_state(signing_keys, gate_closure_ms=now_ms() - 1), manifest, 'r1').open_for_orders()


def test_public_results_count_only_with_all_manifest_signatures(deployment):
    _, manifest, signing_keys = deployment
    body = json.dumps({'round_id': 'r1', 'slots': []})
    signatures = {i: k.sign(messages.PUBLIC_DOMAIN + body.encode()) for i, k in enumerate(signing_keys)}
    messages.verify_public(body, signatures, manifest.verify_keys())
    for forged in ({}, {0: signatures[0], 1: signatures[1]}, {**signatures, 7: b'x' * 64}):
        with pytest.raises(Tampered):
            messages.verify_public(body, forged, manifest.verify_keys())
    with pytest.raises(Tampered, match='no node keys'):  # "signed by all 0 nodes" is never a success
        messages.verify_public(body, {}, [])


def test_a_manifest_is_checked_strictly_and_refused_when_others_can_write_it(deployment, tmp_path):
    d, manifest, _ = deployment
    raw = json.loads(manifest.to_json())
    bad = {
        'm below 3': dict(raw, m=2, nodes=raw['nodes'][:2], t=0),
        'another t': dict(raw, t=0),
        'a node missing': dict(raw, nodes=raw['nodes'][:2]),
        'reordered': dict(raw, nodes=[raw['nodes'][1], raw['nodes'][0], raw['nodes'][2]]),
        'an address': dict(raw, nodes=[dict(raw['nodes'][0], addresses=['no port'])] + raw['nodes'][1:]),
        'a key': dict(raw, nodes=[dict(raw['nodes'][0], sign='00' * 31)] + raw['nodes'][1:]),
        'same key twice': dict(raw, nodes=[raw['nodes'][0], dict(raw['nodes'][1], sign=raw['nodes'][0]['sign']),
                                           raw['nodes'][2]]),
        'an extra key': dict(raw, extra=1),
    }
    for value in bad.values():
        with pytest.raises(KeyFileError):
            Manifest.from_json(json.dumps(value))
    for text in ('[', '[]', '1', '"x"', '{"version": 1}', '[' * 100000):
        with pytest.raises(KeyFileError):
            Manifest.from_json(text)
    own = tmp_path / 'k'
    own.mkdir(mode=0o700)
    (own / 'manifest.json').write_text(manifest.to_json())
    os.chmod(own / 'manifest.json', 0o666)  # another local user could choose this client's nodes
    with pytest.raises(KeyFileError, match='writable'):
        load_manifest(str(own))
    os.chmod(own / 'manifest.json', 0o644)
    assert load_manifest(str(own)) == manifest
    with pytest.raises(KeyFileError, match='cannot read'):
        load_manifest(str(tmp_path / 'nowhere'))


@settings(max_examples=run_examples(200), deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4)))
def test_any_json_is_a_manifest_or_a_key_file_error(value):
    try:
        Manifest.from_json(json.dumps(value))
    except KeyFileError:
        pass


def test_keys_all_and_keys_manifest_write_the_manifest(tmp_path):
    d = tmp_path / 'k'
    proc = cli('keys', 'all', '--dir', d, '--node-address', 'a.example:7301', '--node-address', 'b.example:7301',
               '--node-address', 'c.example:7301')
    assert proc.returncode == 0, proc.stderr
    manifest = load_manifest(str(d))
    assert [n.addresses for n in manifest.nodes] == [('a.example:7301',), ('b.example:7301',), ('c.example:7301',)]
    assert [k.public_bytes_raw() for k in manifest.verify_keys()] == [
        k.public_bytes_raw() for k in keys.load_node_verify_keys(str(d), 3)]
    assert oct(os.stat(d / 'manifest.json').st_mode & 0o777) == '0o644'
    proc = cli('keys', 'manifest', '--dir', d, '--node-address', 'x:1')
    assert proc.returncode == 2 and 'one --node-address per node' in proc.stderr and 'Traceback' not in proc.stderr
    proc = cli('keys', 'manifest', '--dir', d, '--node-address', 'x:1', '--node-address', 'y:2', '--node-address',
               'bad address')
    assert proc.returncode == 2 and 'host:port' in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
