"""Key material for a deployment: a CA, node TLS certificates and signing keys, participant keys.

  ca/ca.key, ca/ca.pem                    the operators' certificate authority (ECDSA P-256)
  nodes/node{i}.key, nodes/node{i}.pem    node i's TLS key and certificate (server and client
                                          auth, SANs for its hosts), signed by the CA
  nodes/node{i}.sign.key, .sign.pub       node i's Ed25519 key for signing receipts and results
  participants/<id>.key                   a participant's Ed25519 private key (stays with it)
  participants/<id>.kex.key               its X25519 key: nodes encrypt its result shares to it
  clients/<name>.key, .pem                client TLS certificates: submitter (participants and
                                          representatives), operator (opens and closes rounds)
  broker/broker.key, broker/broker.pem    the broker's TLS certificate (server, and client of the nodes)
  aggregator/aggregator.key, .pem         the statistics aggregator's TLS certificate (server); grid
                                          operators fetch aggregates with client certificates named
                                          like their Paillier keys (clients/dso.pem, clients/tso.pem)
  registry.json                           participant -> {"sign": Ed25519, "kex": X25519} public keys
                                          (hex), loaded by every node: only registered participants
                                          can trade, and only they can read their results

Whatever the umask: directories are 0700, private keys 0600 (never overwritten), public files
0644 (replaced atomically). The registry and the CA certificate are read only if nobody but
their owner (or root) can write them (common/files.py check_not_writable_by_others).
"""

import datetime
import ipaddress
import json
import os
import re
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import KeyFileError
from .files import check_not_writable_by_others
from .names import NAME_RULE, is_name

VALIDITY_DAYS = 825


def _make_key_dir(directory):
    """Create directory and its missing parents, and make directory and those 0700, whatever the
    umask (under umask 000 makedirs left them 0777: anyone could swap a participant's key)."""
    created, d = [], directory
    while d and not os.path.isdir(d):
        created.append(d)
        d = os.path.dirname(d)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for d in dict.fromkeys([directory, *created]):
        os.chmod(d, 0o700)


def write_private_file(path: str, data: bytes) -> None:
    """Write a new private key file, mode 0600, in a 0700 directory.

    Raises:
        KeyFileError: the file exists (a private key is never overwritten).
    """
    _make_key_dir(os.path.dirname(os.path.abspath(path)))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f'{path}: exists; refusing to overwrite a private key') from None
    with os.fdopen(fd, 'wb') as f:
        os.fchmod(f.fileno(), 0o600)  # the umask may have taken bits away
        f.write(data)


def write_public_file(path: str, data: bytes) -> None:
    """Write or replace a public file (certificate, public key, registry, manifest): mode 0644 in
    a 0700 directory, atomically (readers see the old or the new file, never a part)."""
    directory = os.path.dirname(os.path.abspath(path))
    _make_key_dir(directory)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{os.path.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _pem_private(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'mpc_market'),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(out_dir, name='mpc_market CA'):
    """A self-signed CA certificate and key in out_dir/ca/."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    write_private_file(os.path.join(out_dir, 'ca', 'ca.key'), _pem_private(key))
    write_public_file(os.path.join(out_dir, 'ca', 'ca.pem'), cert.public_bytes(serialization.Encoding.PEM))
    return cert


def load_ca(out_dir):
    try:
        check_not_writable_by_others(os.path.join(out_dir, 'ca', 'ca.pem'), 'CA certificate')
        with open(os.path.join(out_dir, 'ca', 'ca.key'), 'rb') as f:
            key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(out_dir, 'ca', 'ca.pem'), 'rb') as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as exc:
        raise KeyFileError(f'{out_dir}/ca: cannot load the CA ({exc})') from None
    return key, cert


def _issue(out_dir, subdir, name, dns_names=(), hosts=(), server=False):
    """A CA-signed ECDSA certificate for name (client auth; server auth too when server)."""
    ca_key, ca_cert = load_ca(out_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(n) for n in dns_names]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server else \
        [ExtendedKeyUsageOID.CLIENT_AUTH]
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=VALIDITY_DAYS))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usages), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    base = os.path.join(out_dir, subdir, name)
    write_private_file(base + '.key', _pem_private(key))
    write_public_file(base + '.pem', cert.public_bytes(serialization.Encoding.PEM))
    return cert


def is_server_name(name: str) -> bool:
    """Whether name is, to a TLS name check, the name of a server: broker, aggregator or node<i>
    in any case and with any trailing dots (gRPC matches 'BROKER' and 'broker.' to 'broker')."""
    canonical = name.rstrip('.').casefold()
    return canonical in ('broker', 'aggregator') or re.fullmatch(r'node[0-9]+', canonical) is not None


def create_client(out_dir, name):
    """A client-auth TLS certificate (a submitter, a representative, an operator). The names of
    servers and nodes are reserved, whatever their case or trailing dots, so no client
    certificate can pass for one."""
    if not is_name(name) or is_server_name(name):
        raise KeyFileError(f'{name[:80]!r} cannot name a client certificate ({NAME_RULE}; not broker, aggregator '
                           'or node<i>, in any case or with trailing dots)')
    return _issue(out_dir, 'clients', name)


def create_broker(out_dir, hosts=('127.0.0.1', 'localhost')):
    """The broker's TLS certificate: server for clients, client towards the nodes (name 'broker')."""
    return _issue(out_dir, 'broker', 'broker', dns_names=['broker'], hosts=hosts, server=True)


def create_aggregator(out_dir, hosts=('127.0.0.1', 'localhost')):
    """The statistics aggregator's TLS server certificate (name 'aggregator')."""
    return _issue(out_dir, 'aggregator', 'aggregator', dns_names=['aggregator'], hosts=hosts, server=True)


def node_name(index):
    """The name every client pins node index's TLS certificate to, whatever its address."""
    return f'node{index}'


def mpyc_party_name(index):
    """The host name MPyC checks on a party's certificate when it connects with --ssl."""
    return f'MPyC party {index}'


def create_node(out_dir, index, hosts=('127.0.0.1', 'localhost')):
    """TLS certificate (server + client auth; gRPC and MPyC) and Ed25519 signing key for node index."""
    cert = _issue(out_dir, 'nodes', node_name(index), dns_names=[node_name(index), mpyc_party_name(index)],
                  hosts=hosts, server=True)
    base = os.path.join(out_dir, 'nodes', node_name(index))
    signing = ed25519.Ed25519PrivateKey.generate()
    write_private_file(base + '.sign.key', _pem_private(signing))
    write_public_file(base + '.sign.pub', signing.public_key().public_bytes(serialization.Encoding.Raw,
                                                                        serialization.PublicFormat.Raw).hex().encode())
    return cert


def create_participants(out_dir, participants):
    """An Ed25519 signing key and an X25519 key-agreement key per participant, and the registry
    of their public keys (merged if present)."""
    registry_path = os.path.join(out_dir, 'registry.json')
    registry = _read_json(registry_path) if os.path.exists(registry_path) else {}
    for participant in participants:
        if not is_name(participant):
            raise KeyFileError(f'participant {participant[:80]!r} is not {NAME_RULE}')
        if participant in registry:
            raise KeyFileError(f'{registry_path}: {participant} is already registered')
        key = ed25519.Ed25519PrivateKey.generate()
        kex = x25519.X25519PrivateKey.generate()
        write_private_file(os.path.join(out_dir, 'participants', f'{participant}.key'), _pem_private(key))
        write_private_file(os.path.join(out_dir, 'participants', f'{participant}.kex.key'), _pem_private(kex))
        registry[participant] = {'sign': _raw_hex(key.public_key()), 'kex': _raw_hex(kex.public_key())}
    write_public_file(registry_path, json.dumps(dict(sorted(registry.items())), indent=1).encode())
    return registry


def _read_json(path):
    try:
        check_not_writable_by_others(path, 'participant registry')
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f'{path}: cannot load the participant registry ({exc})') from None


def _raw_hex(public_key):
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def _registry_entries(path):
    entries = _read_json(path)
    if not isinstance(entries, dict) or not all(
            is_name(p) and isinstance(e, dict) and set(e) == {'sign',
                                                              'kex'} and all(isinstance(v, str) for v in e.values())
            for p, e in entries.items()):
        raise KeyFileError(f'{path}: expected {{participant: {{"sign": hex, "kex": hex}}}}')
    return entries


def _registry_keys(path, kind, from_public_bytes):
    try:
        return {p: from_public_bytes(bytes.fromhex(e[kind])) for p, e in _registry_entries(path).items()}
    except ValueError as exc:
        raise KeyFileError(f'{path}: malformed public key ({exc})') from None


def load_registry(path):
    """participant -> Ed25519PublicKey (order, reading and request signatures)."""
    return _registry_keys(path, 'sign', ed25519.Ed25519PublicKey.from_public_bytes)


def load_agreement_keys(path):
    """participant -> X25519PublicKey (result shares are sealed to it)."""
    return _registry_keys(path, 'kex', x25519.X25519PublicKey.from_public_bytes)


def _load_participant_private(out_dir, participant, suffix, what):
    path = os.path.join(out_dir, 'participants', f'{participant}{suffix}')
    try:
        with open(path, 'rb') as f:
            return serialization.load_pem_private_key(f.read(), None)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f'{path}: cannot load the {what} of {participant} ({exc})') from None


def load_participant_agreement_key(out_dir, participant):
    """The participant's X25519 private key (opens its sealed result shares)."""
    return _load_participant_private(out_dir, participant, '.kex.key', 'key-agreement key')


def load_participant_key(out_dir, participant):
    """The participant's Ed25519 signing key."""
    return _load_participant_private(out_dir, participant, '.key', 'key')


def read_key_file(keys_dir, *parts):
    path = os.path.join(keys_dir, *parts)
    try:
        with open(path, 'rb') as f:
            return f.read()
    except OSError as exc:
        raise KeyFileError(f'{path}: cannot read ({exc.strerror})') from None


def load_node_signing_key(keys_dir, index):
    data = read_key_file(keys_dir, 'nodes', f'{node_name(index)}.sign.key')
    try:
        return serialization.load_pem_private_key(data, None)
    except ValueError as exc:
        raise KeyFileError(f'{keys_dir}/nodes/{node_name(index)}.sign.key: {exc}') from None


def load_node_verify_keys(keys_dir, nodes):
    """Ed25519 public keys of nodes 0..nodes-1 (receipts, result shares, public results)."""
    out = []
    for i in range(nodes):
        text = read_key_file(keys_dir, 'nodes', f'{node_name(i)}.sign.pub').decode().strip()
        try:
            out.append(ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(text)))
        except ValueError as exc:
            raise KeyFileError(f'{keys_dir}/nodes/{node_name(i)}.sign.pub: {exc}') from None
    return out


def public_key_hex(public_key):
    """The raw bytes of an Ed25519 or X25519 public key, in hex (registry and manifest entries)."""
    return _raw_hex(public_key)
