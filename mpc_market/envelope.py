"""Signed order envelopes: what a participant commits to when it submits to the nodes.

An envelope binds the round id, the participant, a fresh nonce and the SHA-256 hashes of all m
share packages (one per node, in node order). The participant signs its canonical encoding with
its Ed25519 key; every node checks the signature against the registry, that its own package
hashes to the value at its index (tampering), that the round is the open one and that the nonce
was not used before (replay). Nodes keep envelopes and signatures, so they can later prove what
was submitted, and any node can check that all nodes hold the same submission.
"""

import hashlib
import json
import os
from dataclasses import asdict, dataclass

from cryptography.exceptions import InvalidSignature

DOMAIN = b'mpc-market/order-envelope/v1\n'


def canonical_bytes(domain, fields):
    """What gets signed: a domain separator and the canonical JSON of the fields."""
    return domain + json.dumps(fields, sort_keys=True, separators=(',', ':')).encode()


class EnvelopeError(Exception):
    """A submission to reject, with the reason."""


@dataclass(frozen=True)
class Envelope:
    round_id: str
    participant: str
    nonce: str                # 32 hex digits, fresh per submission
    package_hashes: tuple     # SHA-256 hex of each node's package, node 0 first

    def canonical(self):
        return canonical_bytes(DOMAIN, {'nonce': self.nonce, 'package_hashes': list(self.package_hashes),
                                        'participant': self.participant, 'round_id': self.round_id})

    def to_json(self):
        return json.dumps(asdict(self) | {'package_hashes': list(self.package_hashes)}, sort_keys=True)

    @classmethod
    def from_json(cls, text):
        try:
            raw = json.loads(text)
            return cls(str(raw['round_id']), str(raw['participant']), str(raw['nonce']),
                       tuple(str(h) for h in raw['package_hashes']))
        except (ValueError, KeyError, TypeError) as exc:
            raise EnvelopeError(f'malformed envelope: {exc}') from None


def package_hash(package):
    return hashlib.sha256(package).hexdigest()


def seal(private_key, round_id, participant, packages):
    """(envelope, signature) for one participant's packages (bytes, one per node)."""
    envelope = Envelope(round_id, participant, os.urandom(16).hex(), tuple(package_hash(p) for p in packages))
    return envelope, private_key.sign(envelope.canonical())


def authenticate(envelope, signature, registry):
    """Raise EnvelopeError unless a registered participant signed this envelope."""
    public_key = registry.get(envelope.participant)
    if public_key is None:
        raise EnvelopeError(f'participant {envelope.participant!r} is not registered')
    try:
        public_key.verify(signature, envelope.canonical())
    except InvalidSignature:
        raise EnvelopeError(f'bad signature for {envelope.participant}') from None


def check(envelope, signature, registry, round_id, node_index, package, seen_nonces, authenticated=False):
    """Raise EnvelopeError unless node node_index should accept this submission."""
    if not authenticated:
        authenticate(envelope, signature, registry)
    if envelope.round_id != round_id:
        raise EnvelopeError(f'envelope is for round {envelope.round_id!r}, the open round is {round_id!r}')
    if (envelope.participant, envelope.nonce) in seen_nonces:
        raise EnvelopeError(f'replayed envelope (nonce {envelope.nonce} already used by {envelope.participant})')
    if not 0 <= node_index < len(envelope.package_hashes):
        raise EnvelopeError(f'envelope has no package hash for node {node_index}')
    if package_hash(package) != envelope.package_hashes[node_index]:
        raise EnvelopeError('package does not match the signed hash (tampered in transit?)')
