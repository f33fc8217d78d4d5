"""Deployment key material and signed order envelopes."""

import os
import stat

import pytest
from cryptography import x509

from mpc_market.common import keys
from mpc_market.common.errors import KeyFileError, NotAuthenticated, Replayed, Tampered, WrongPhase
from mpc_market.net import messages

from helpers import cli


@pytest.fixture(scope='module')
def keydir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp('keys'))
    keys.create_ca(d)
    for i in range(3):
        keys.create_node(d, i, ['127.0.0.1', 'localhost', f'node{i}.example'])
    keys.create_participants(d, ['alice', 'bob'])
    return d


def test_node_certificates_chain_to_the_ca(keydir):
    _, ca = keys.load_ca(keydir)
    for i in range(3):
        with open(os.path.join(keydir, 'nodes', f'node{i}.pem'), 'rb') as f:
            cert = x509.load_pem_x509_certificate(f.read())
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert f'node{i}.example' in names.get_values_for_type(x509.DNSName)
        assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ['127.0.0.1']


def test_private_keys_are_private_and_never_overwritten(keydir):
    for path in ('ca/ca.key', 'nodes/node0.key', 'nodes/node0.sign.key', 'participants/alice.key'):
        assert stat.S_IMODE(os.stat(os.path.join(keydir, path)).st_mode) == 0o600
    with pytest.raises(KeyFileError, match='refusing to overwrite'):
        keys.create_ca(keydir)
    with pytest.raises(KeyFileError, match='already registered'):
        keys.create_participants(keydir, ['alice'])


def test_registry_merges_new_participants(keydir):
    keys.create_participants(keydir, ['carol'])
    assert sorted(keys.load_registry(os.path.join(keydir, 'registry.json'))) == ['alice', 'bob', 'carol']


def test_envelopes_accept_the_honest_and_reject_attacks(keydir):
    registry = keys.load_registry(os.path.join(keydir, 'registry.json'))
    alice, bob = keys.load_participant_key(keydir, 'alice'), keys.load_participant_key(keydir, 'bob')
    packages = [b'share for node 0', b'share for node 1', b'share for node 2']
    env, sig = messages.seal(alice, 'round-7', 'alice', packages)
    seen = set()
    for i, package in enumerate(packages):
        messages.check(env, sig, registry, 'round-7', i, package, seen)
    assert messages.Envelope.from_json(env.to_json()) == env

    def rejected(error, reason, *args):  # the class says what went wrong, the message says how
        with pytest.raises(error, match=reason):
            messages.check(*args)
    rejected(NotAuthenticated, 'not authenticated', messages.Envelope('round-7', 'mallory', env.nonce,
                                                                      env.package_hashes), sig,
             registry, 'round-7', 0, packages[0], seen)
    forged, forged_sig = messages.seal(bob, 'round-7', 'alice', packages)  # bob signs as alice
    rejected(NotAuthenticated, 'not authenticated', forged, forged_sig, registry, 'round-7', 0, packages[0], seen)
    rejected(WrongPhase, 'open round', env, sig, registry, 'round-8', 0, packages[0], seen)
    rejected(Replayed, 'replayed', env, sig, registry, 'round-7', 0, packages[0], {('alice', env.nonce)})
    rejected(Tampered, 'tampered', env, sig, registry, 'round-7', 1, b'share for node 1, altered', seen)
    rejected(messages.EnvelopeError, 'no package hash', env, sig, registry, 'round-7', 3, packages[0], seen)
    altered = messages.Envelope('round-7', 'alice', env.nonce, (env.package_hashes[1],) + env.package_hashes[1:])
    rejected(NotAuthenticated, 'not authenticated', altered, sig, registry, 'round-7', 0, packages[1], seen)
    with pytest.raises(messages.EnvelopeError, match='malformed'):
        messages.Envelope.from_json('{"round_id": 1}')


def test_keys_cli_all(tmp_path):
    orders = tmp_path / 'orders.csv'
    orders.write_text('participant,slot,side,energy_wh,limit_price\nh1,0,buy,5,0.1\nh2,0,sell,5,0.05\n')
    proc = cli('keys', 'all', '--dir', tmp_path / 'k', '--orders', orders)
    assert proc.returncode == 0, proc.stderr
    assert sorted(os.listdir(tmp_path / 'k' / 'nodes')) == sorted(
        f'node{i}{ext}' for i in range(3) for ext in ('.key', '.pem', '.sign.key', '.sign.pub'))
    assert sorted(os.listdir(tmp_path / 'k' / 'participants')) == ['h1.kex.key', 'h1.key', 'h2.kex.key', 'h2.key']
    assert sorted(os.listdir(tmp_path / 'k' / 'clients')) == ['operator.key', 'operator.pem', 'submitter.key',
                                                              'submitter.pem']
    assert sorted(os.listdir(tmp_path / 'k' / 'broker')) == ['broker.key', 'broker.pem']
    proc = cli('keys', 'ca', '--dir', tmp_path / 'k')
    assert proc.returncode == 2 and proc.stderr.startswith('error: ') and 'refusing to overwrite' in proc.stderr
