"""Signed order envelopes: what a participant commits to when it submits to the nodes.

An envelope binds the round id, the participant, a fresh nonce, a sequence number and the SHA-256
hashes of all m share packages (one per node, in node order). Of two envelopes of one participant
every node keeps the one with the higher (seq, envelope hash), whatever order they arrive in, so
concurrent resubmissions still leave all nodes holding the same envelope. The participant signs
its canonical encoding with its Ed25519 key; every node checks the signature against the registry, that its own package
hashes to the value at its index (tampering), that the round is the open one and that the nonce
was not used before (replay). Nodes keep envelopes and signatures, so they can later prove what
was submitted, and any node can check that all nodes hold the same submission.
"""

import dataclasses
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from .names import is_name

DOMAIN = b'mpc-market/order-envelope/v1\n'


def canonical_bytes(domain, fields):
    """What gets signed: a domain separator and the canonical JSON of the fields."""
    return domain + json.dumps(fields, sort_keys=True, separators=(',', ':')).encode()


class EnvelopeError(Exception):
    """A submission to reject, with the reason."""


SHA256_HEX = re.compile(r'[0-9a-f]{64}')
NONCE_HEX = re.compile(r'[0-9a-f]{32}')
MAX_SEQ = (1 << 63) - 1
MAX_NODES = 7


@dataclass(frozen=True)
class Envelope:
    round_id: str
    participant: str
    nonce: str                # 32 hex digits, fresh per submission
    package_hashes: tuple     # SHA-256 hex of each node's package, node 0 first
    seq: int = 0              # the participant's submission counter: the highest wins at every node

    def fields(self):
        return {'nonce': self.nonce, 'package_hashes': list(self.package_hashes), 'participant': self.participant,
                'round_id': self.round_id, 'seq': self.seq}

    def canonical(self):
        return canonical_bytes(DOMAIN, self.fields())

    def to_json(self):
        """The exact bytes a node stores and forwards: the signed canonical JSON, without the domain."""
        return self.canonical()[len(DOMAIN):].decode()

    @classmethod
    def from_json(cls, text):
        """Parse an envelope; only its own canonical encoding is accepted (no extra, missing or
        repeated keys, no other types, no other spacing), so the stored bytes are the signed bytes."""
        raw = text.encode() if isinstance(text, str) else bytes(text)
        try:
            fields = json.loads(raw, object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as exc:
            raise EnvelopeError(f'malformed envelope: {str(exc)[:80]}') from None
        if not isinstance(fields, dict) or set(fields) != ENVELOPE_KEYS:
            raise EnvelopeError(f'malformed envelope: keys must be {sorted(ENVELOPE_KEYS)}')
        hashes = fields['package_hashes']
        ok = (is_name(fields['round_id']) and is_name(fields['participant'])
              and isinstance(fields['nonce'], str) and NONCE_HEX.fullmatch(fields['nonce'])
              and type(fields['seq']) is int and 0 <= fields['seq'] <= MAX_SEQ
              and isinstance(hashes, list) and 1 <= len(hashes) <= MAX_NODES
              and all(isinstance(h, str) and SHA256_HEX.fullmatch(h) for h in hashes))
        if not ok:
            raise EnvelopeError('malformed envelope: a field has the wrong type or format')
        envelope = cls(fields['round_id'], fields['participant'], fields['nonce'], tuple(hashes), fields['seq'])
        if envelope.to_json().encode() != raw:
            raise EnvelopeError('malformed envelope: not in canonical form')
        return envelope


ENVELOPE_KEYS = frozenset(f.name for f in dataclasses.fields(Envelope))


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError('repeated key')
    return dict(pairs)


def package_hash(package):
    return hashlib.sha256(package).hexdigest()


def next_seq():
    """A participant's next sequence number: nanoseconds since the epoch, so a later submission
    from the same participant (from any of its machines with a sane clock) outranks an earlier one."""
    return time.time_ns()


def seal(private_key, round_id, participant, packages, seq=None):
    """(envelope, signature) for one participant's packages (bytes, one per node)."""
    envelope = Envelope(round_id, participant, os.urandom(16).hex(), tuple(package_hash(p) for p in packages),
                        next_seq() if seq is None else seq)
    return envelope, private_key.sign(envelope.canonical())


def authenticate(envelope, signature, registry):
    """Raise EnvelopeError unless a registered participant signed this envelope. An unknown
    participant and a bad signature get the same answer (no registry enumeration)."""
    public_key = registry.get(envelope.participant)
    try:
        (public_key or _UNKNOWN).verify(signature, envelope.canonical())
        if public_key is None:
            raise InvalidSignature
    except InvalidSignature:
        raise EnvelopeError(f'not authenticated: no valid signature of a registered {envelope.participant}') from None


_UNKNOWN = ed25519.Ed25519PrivateKey.generate().public_key()


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
