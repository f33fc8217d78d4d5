"""Deployment key material and signed order envelopes."""

import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest
from cryptography import x509

from mpc_market.common import keys
from mpc_market.common.errors import KeyFileError, NotAuthenticated, Replayed, Tampered, WrongPhase
from mpc_market.net import messages, tls
from mpc_market.net.localdeploy import LocalDeployment

from helpers import REPO, cli


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
    from helpers import TOML
    registry = keys.load_registry(os.path.join(keydir, 'registry.json'))
    alice, bob = keys.load_participant_key(keydir, 'alice'), keys.load_participant_key(keydir, 'bob')
    packages = [b'share for node 0', b'share for node 1', b'share for node 2']
    params = messages.RoundParams.of('round-7', [0], TOML, 10**12, 0, 0, '', 3)
    env, sig = messages.seal(alice, 'round-7', 'alice', packages, params_sha256=params.sha256())
    seen = set()
    for i, package in enumerate(packages):
        messages.check(env, sig, registry, params, i, package, seen)
    assert messages.Envelope.from_json(env.to_json()) == env

    def rejected(error, reason, *args):  # the class says what went wrong, the message says how
        with pytest.raises(error, match=reason):
            messages.check(*args)
    rejected(NotAuthenticated, 'not authenticated', messages.Envelope('round-7', 'mallory', env.nonce,
                                                                      env.package_hashes, 0, 'order',
                                                                      params.sha256()), sig,
             registry, params, 0, packages[0], seen)
    forged, forged_sig = messages.seal(bob, 'round-7', 'alice', packages, params_sha256=params.sha256())
    rejected(NotAuthenticated, 'not authenticated', forged, forged_sig, registry, params, 0, packages[0], seen)
    other_round = messages.RoundParams.of('round-8', [0], TOML, 10**12, 0, 0, '', 3)
    rejected(WrongPhase, 'open round', env, sig, registry, other_round, 0, packages[0], seen)
    # the same round as a lying broker showed it (another market text, gate closure or node count)
    for shown in (messages.RoundParams.of('round-7', [0], TOML + '\n', 10**12, 0, 0, '', 3),
                  messages.RoundParams.of('round-7', [0], TOML, 10**12 + 1, 0, 0, '', 3),
                  messages.RoundParams.of('round-7', [0], TOML, 10**12, 0, 0, '', 5)):
        rejected(WrongPhase, 'other parameters', env, sig, registry, shown, 0, packages[0], seen)
    two, two_sig = messages.seal(alice, 'round-7', 'alice', packages[:2], params_sha256=params.sha256())
    rejected(messages.EnvelopeError, 'among 2 nodes', two, two_sig, registry, params, 0, packages[0], seen)
    rejected(Replayed, 'replayed', env, sig, registry, params, 0, packages[0], {('alice', env.nonce)})
    rejected(Tampered, 'tampered', env, sig, registry, params, 1, b'share for node 1, altered', seen)
    rejected(messages.EnvelopeError, 'no package hash', env, sig, registry, params, 3, packages[0], seen)
    altered = messages.Envelope('round-7', 'alice', env.nonce, (env.package_hashes[1],) + env.package_hashes[1:], 0,
                                'order', params.sha256())
    rejected(NotAuthenticated, 'not authenticated', altered, sig, registry, params, 0, packages[1], seen)
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


# -- file modes: another local user must not be able to swap a key, the registry or the CA ---------
def _keys_all(directory, umask):
    """The real CLI in its own process, under the given umask."""
    return subprocess.run([sys.executable, '-m', 'mpc_market', 'keys', 'all', '--dir', str(directory),
                           '--participant', 'a', '--participant', 'b'], preexec_fn=lambda: os.umask(umask),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


def _modes(directory):
    """relative path -> permission bits of directory and everything under it."""
    out = {'.': stat.S_IMODE(os.stat(directory).st_mode)}
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            full = os.path.join(root, name)
            out[os.path.relpath(full, directory)] = stat.S_IMODE(os.lstat(full).st_mode)
    return out


@pytest.mark.parametrize('umask', [0o000, 0o022])
def test_keys_all_sets_every_mode_whatever_the_umask(tmp_path, umask):
    # umask 000 once left key directories 0777 and registry.json 0666
    directory = tmp_path / 'k'
    proc = _keys_all(directory, umask)
    assert proc.returncode == 0, proc.stderr
    modes = _modes(directory)
    assert {'ca', 'nodes', 'broker', 'clients', 'participants', 'registry.json', 'participants/a.key'} <= set(modes)
    for path, mode in modes.items():
        if os.path.isdir(directory / path):
            expected = 0o700
        elif path.endswith('.key'):
            expected = 0o600
        else:  # certificates, public signing keys, the registry (and the manifest)
            expected = 0o644
        assert mode == expected, (path, oct(mode))
    assert not [p for p in modes if p.endswith('.tmp')]


def _as_other_user(action):
    """'refused' if action() raises PermissionError in a child process running as nobody, else 'done'
    (or 'failed' for any other error)."""
    pid = os.fork()
    if pid == 0:  # the child does nothing but the attack, then leaves without running any cleanup
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            action()
            code = 0
        except PermissionError:
            code = 13
        finally:
            os._exit(code)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return {0: 'done', 13: 'refused'}.get(status, 'failed')


@pytest.mark.skipif(os.geteuid() != 0, reason='needs root to act as another local user')
def test_another_local_user_cannot_rewrite_a_participant_key():
    base = tempfile.mkdtemp(prefix='keys-other-user-')
    try:
        os.chmod(base, 0o755)  # reachable by the other user, like a home directory
        directory = os.path.join(base, 'k')
        assert _keys_all(directory, 0o000).returncode == 0
        key = os.path.join(directory, 'participants', 'a.key')
        with open(key, 'rb') as f:
            original = f.read()
        registry = os.path.join(directory, 'registry.json')
        attacks = {'rewrite the registry': lambda: open(registry, 'w').write('{}'),
                   'rewrite a participant key': lambda: open(key, 'wb').write(b'x'),
                   'add a key file': lambda: open(os.path.join(directory, 'participants', 'c.key'), 'w'),
                   'move a key away': lambda: os.rename(key, key + '.old'),
                   'write into the key directory': lambda: open(os.path.join(directory, 'evil'), 'w')}
        for name, attack in attacks.items():
            assert _as_other_user(attack) == 'refused', name
        with open(key, 'rb') as f:
            assert f.read() == original
    finally:
        shutil.rmtree(base)


def test_public_files_are_replaced_atomically_and_keep_their_mode(tmp_path):
    path = tmp_path / 'pub' / 'registry.json'
    previous = os.umask(0o077)
    try:
        keys.write_public_file(str(path), b'{}')
        keys.write_public_file(str(path), b'{"a": 1}')
    finally:
        os.umask(previous)
    assert path.read_bytes() == b'{"a": 1}' and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert os.listdir(tmp_path / 'pub') == ['registry.json']
    assert stat.S_IMODE((tmp_path / 'pub').stat().st_mode) == 0o700


@pytest.mark.slow  # starts the node daemon (mpc-market node) three times
def test_a_registry_or_ca_writable_by_others_is_refused_in_one_line(tmp_path):
    deployment = LocalDeployment(str(tmp_path / 'dep')).create(['alice'])
    registry = os.path.join(deployment.keys, 'registry.json')
    ca = os.path.join(deployment.keys, 'ca', 'ca.pem')

    def node_start():
        proc = subprocess.run([sys.executable, '-m', 'mpc_market', 'node', '--config', deployment.node_config(0)],
                              capture_output=True, text=True, timeout=60, cwd=deployment.dir)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr  # no traceback
        return proc.stderr

    def refused(call, path):
        with pytest.raises(KeyFileError) as info:
            call()
        assert str(info.value).startswith(path) and '\n' not in str(info.value)
        return str(info.value)

    os.chmod(registry, 0o666)
    message = node_start()
    assert message.startswith(f'error: {registry}: ') and 'writable by group or others' in message
    assert 'participant registry' in refused(lambda: keys.load_registry(registry), registry)
    refused(lambda: keys.load_agreement_keys(registry), registry)
    os.chmod(registry, 0o644)
    os.chmod(deployment.keys, 0o777)  # the file is fine, but anyone could replace it
    assert 'directory of the participant registry' in node_start()
    refused(lambda: keys.load_registry(registry), deployment.keys)
    os.chmod(deployment.keys, 0o700)
    os.chmod(ca, 0o664)
    assert 'CA certificate' in node_start()
    refused(lambda: tls.client_credentials(deployment.keys, 'clients', 'submitter'), ca)
    os.chmod(ca, 0o644)
    keys.load_registry(registry)
    tls.client_credentials(deployment.keys, 'clients', 'submitter')
    if os.geteuid() == 0:  # a file another user owns could be rewritten by it whatever its mode
        os.chown(registry, 65534, 65534)
        assert 'belongs to another user' in refused(lambda: keys.load_registry(registry), registry)
