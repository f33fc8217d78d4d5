"""The deployment manifest: what a client trusts about the market nodes instead of the broker.

``keys all`` (or ``keys manifest`` in a multi-host key ceremony) writes ``manifest.json`` next to
the CA certificate: the number of nodes m, the sharing threshold t, and per node its index, the
name its TLS certificate is pinned to, the addresses it serves on and its Ed25519 signing key.
Participants receive it with their keys, out of band, like ``ca/ca.pem``. Every client command
shares with exactly these m nodes, verifies results, receipts and round parameters with exactly
these m keys, and refuses a round whose state names other nodes or another count — so a broker
that lies about the deployment cannot lower the threshold or forge a signature set.
"""

import json
import os
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ed25519

from .errors import KeyFileError

MANIFEST_FILE = 'manifest.json'
MANIFEST_VERSION = 1
MIN_NODES, MAX_NODES = 3, 7  # the deployment's range (mpc-market up --nodes)
MAX_ADDRESSES = 8
MAX_MANIFEST_BYTES = 64 << 10

ADDRESS_RE = re.compile(r'[A-Za-z0-9.\-]{1,253}:[0-9]{1,5}|\[[0-9A-Fa-f:.]{2,45}\]:[0-9]{1,5}', re.ASCII)
SIGN_HEX_RE = re.compile(r'[0-9a-f]{64}', re.ASCII)

__all__ = ['Manifest', 'ManifestNode', 'MANIFEST_FILE', 'check_address', 'load_manifest', 'write_manifest',
           'manifest_from_keys']


def check_address(address: str) -> str:
    """Return address if it is ``host:port`` with an ASCII host and a port 1..65535.

    Raises:
        KeyFileError: any other text.
    """
    if not isinstance(address, str) or not ADDRESS_RE.fullmatch(address) \
            or not 1 <= int(address.rsplit(':', 1)[1]) <= 65535:
        raise KeyFileError(f'{str(address)[:80]!r} is not host:port')
    return address


@dataclass(frozen=True)
class ManifestNode:
    """One market node as the deployment's key ceremony pinned it."""
    index: int
    name: str                    # the TLS server name clients pin (node{index})
    addresses: tuple[str, ...]   # host:port it serves gRPC on; the broker must name one of them
    sign_key: str                # Ed25519 public key (hex) of its receipts, results and round parameters

    def verify_key(self) -> ed25519.Ed25519PublicKey:
        """The node's Ed25519 public key."""
        return ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.sign_key))


@dataclass(frozen=True)
class Manifest:
    """m nodes, threshold t, node 0 first."""
    nodes: tuple[ManifestNode, ...]
    threshold: int

    @property
    def m(self) -> int:
        return len(self.nodes)

    def verify_keys(self) -> list[ed25519.Ed25519PublicKey]:
        """Every node's signing key, node 0 first."""
        return [n.verify_key() for n in self.nodes]

    def to_json(self) -> str:
        """The one encoding of a manifest (sorted keys, one node per line)."""
        return json.dumps({'version': MANIFEST_VERSION, 'm': self.m, 't': self.threshold,
                           'nodes': [{'index': n.index, 'name': n.name, 'addresses': list(n.addresses),
                                      'sign': n.sign_key} for n in self.nodes]}, sort_keys=True, indent=1) + '\n'

    @classmethod
    def from_json(cls, text: str, where: str = MANIFEST_FILE) -> 'Manifest':
        """Parse and check a manifest strictly.

        Args:
            text: the file's text.
            where: the file's path, for errors.
        Returns:
            The Manifest.
        Raises:
            KeyFileError: malformed JSON, unknown or missing keys, a count, threshold, name, address or key
                that is not what a deployment can have.
        """
        def bad(message: str) -> KeyFileError:
            return KeyFileError(f'{where}: {message}')
        if len(text) > MAX_MANIFEST_BYTES:
            raise bad('larger than a manifest can be')
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise bad(f'not JSON ({str(exc)[:80]})') from None
        if not isinstance(raw, dict) or set(raw) != {'version', 'm', 't', 'nodes'}:
            raise bad('expected the keys version, m, t and nodes')
        if raw['version'] != MANIFEST_VERSION:
            raise bad(f'version {str(raw["version"])[:20]} is not {MANIFEST_VERSION}')
        m, t, entries = raw['m'], raw['t'], raw['nodes']
        if type(m) is not int or not MIN_NODES <= m <= MAX_NODES:
            raise bad(f'm must be an integer {MIN_NODES}..{MAX_NODES}')
        if type(t) is not int or t != (m - 1) // 2:
            raise bad(f'the nodes share with threshold t = (m-1)/2 = {(m - 1) // 2}, not {str(t)[:20]}')
        if not isinstance(entries, list) or len(entries) != m:
            raise bad(f'nodes must list exactly m = {m} nodes')
        nodes = []
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or set(entry) != {'index', 'name', 'addresses', 'sign'}:
                raise bad(f'node {i}: expected the keys index, name, addresses and sign')
            addresses = entry['addresses']
            if entry['index'] != i or type(entry['index']) is not int:
                raise bad(f'node {i}: index must be {i} (node 0 first)')
            if entry['name'] != f'node{i}':
                raise bad(f'node {i}: name must be node{i}')
            if not isinstance(addresses, list) or not 1 <= len(addresses) <= MAX_ADDRESSES:
                raise bad(f'node {i}: addresses must list 1..{MAX_ADDRESSES} host:port')
            try:
                for address in addresses:
                    check_address(address)
            except KeyFileError as exc:
                raise bad(f'node {i}: address {exc}') from None
            if not isinstance(entry['sign'], str) or not SIGN_HEX_RE.fullmatch(entry['sign']):
                raise bad(f'node {i}: sign must be a 32-byte Ed25519 public key in hex')
            nodes.append(ManifestNode(i, entry['name'], tuple(addresses), entry['sign']))
        if len({n.sign_key for n in nodes}) != m:
            raise bad('two nodes have the same signing key')
        return cls(tuple(nodes), t)

    def node_addresses(self, named: list[str], what: str = 'the round') -> list[str]:
        """The addresses to reach the nodes at, when a round state names named (node 0 first).

        Args:
            named: the addresses the broker's round state lists.
            what: what named them, for errors.
        Returns:
            named, once every entry is an address of the node at its index.
        Raises:
            KeyFileError: another count of nodes, or an address the manifest does not pin for that node.
        """
        if len(named) != self.m:
            raise KeyFileError(f'{what} names {len(named)} nodes; the deployment manifest has m = {self.m}')
        for node, address in zip(self.nodes, named, strict=True):
            if address not in node.addresses:
                raise KeyFileError(f'{what} names {str(address)[:80]!r} as node {node.index}; the deployment '
                                   f'manifest pins {", ".join(node.addresses)}')
        return list(named)


def manifest_from_keys(keys_dir: str, addresses: list[list[str]]) -> Manifest:
    """The manifest of the nodes whose keys are in keys_dir/nodes/.

    Args:
        keys_dir: the key directory (``nodes/node{i}.sign.pub`` of every node).
        addresses: per node, node 0 first, the host:port it serves on.
    Returns:
        The Manifest.
    Raises:
        KeyFileError: a missing or malformed signing key, an address that is not host:port, a count out of range.
    """
    from .keys import load_node_verify_keys, public_key_hex
    if not MIN_NODES <= len(addresses) <= MAX_NODES:
        raise KeyFileError(f'a deployment has {MIN_NODES}..{MAX_NODES} nodes, not {len(addresses)}')
    keys = load_node_verify_keys(keys_dir, len(addresses))
    nodes = tuple(ManifestNode(i, f'node{i}', tuple(check_address(a) for a in node_addresses), public_key_hex(key))
                  for i, (node_addresses, key) in enumerate(zip(addresses, keys, strict=True)))
    manifest = Manifest(nodes, (len(nodes) - 1) // 2)
    return Manifest.from_json(manifest.to_json())  # the same checks as any loaded manifest


def write_manifest(keys_dir: str, manifest: Manifest) -> str:
    """Write keys_dir/manifest.json (mode 0644, atomically); returns its path."""
    from .keys import write_public_file
    path = os.path.join(keys_dir, MANIFEST_FILE)
    write_public_file(path, manifest.to_json().encode())
    return path


def load_manifest(keys_dir: str) -> Manifest:
    """The deployment manifest a client holds (keys_dir/manifest.json).

    Raises:
        KeyFileError: missing, writable by others, or malformed.
    """
    from .files import check_not_writable_by_others
    path = os.path.join(keys_dir, MANIFEST_FILE)
    try:
        check_not_writable_by_others(path, 'deployment manifest')
        with open(path, encoding='utf-8') as f:
            text = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise KeyFileError(f'{path}: cannot read the deployment manifest ({exc.strerror}); it comes with the '
                           'keys, from the key ceremony (mpc-market keys all / keys manifest)') from None
    except UnicodeDecodeError:
        raise KeyFileError(f'{path}: not UTF-8 text') from None
    return Manifest.from_json(text, path)
