"""A meter-day of encrypted readings, signed by the meter's participant key.

The signature binds the meter, the day, the feeder and the SHA-256 of every ciphertext block
(one per operator key), so an aggregator cannot move a meter to another feeder or day, and a
ciphertext swapped in transit is caught. Files hold one JSON object per line; gRPC carries the
same fields as ``EncryptedDay``.
"""

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.days import parse_day as strict_day
from ..common.errors import InputError, Malformed, NotAuthenticated
from ..common.signing import canonical_bytes
from ..common.textinput import read_text
from ..rpc import market_pb2
from .paillier import PublicKey

DOMAIN = b'mpc-market/encrypted-day/v1\n'
_UNKNOWN = ed25519.Ed25519PrivateKey.generate().public_key()  # stands in for a meter nobody registered
NOT_AUTHENTICATED = 'not authenticated: no valid signature of a registered meter'


def parse_day(text: str) -> str:
    """Check a submission's day.

    Args:
        text: the day as sent.

    Returns:
        text, if it is a day YYYY-MM-DD (``common.days``: ASCII digits, a real date).

    Raises:
        ValueError: it is not.
    """
    strict_day(text)
    return text


def _int_bytes(c: int) -> bytes:
    return c.to_bytes(max(1, (c.bit_length() + 7) // 8), 'big')


def ciphertext_text(c: int) -> str:
    """A ciphertext in JSON files.

    Args:
        c: a ciphertext (non-negative).

    Returns:
        base64 of its big-endian bytes.
    """
    return base64.b64encode(_int_bytes(c)).decode()


def ciphertext_from_text(text: str) -> int:
    """The inverse of ciphertext_text.

    Args:
        text: base64 of a ciphertext's big-endian bytes.

    Returns:
        The ciphertext.

    Raises:
        TypeError: text is not a string.
        ValueError: text is not base64 (binascii.Error).
    """
    return int.from_bytes(base64.b64decode(text, validate=True), 'big')


def block_hash(ciphertexts: Iterable[int]) -> str:
    """What a meter's signature binds of one key's ciphertext block.

    Args:
        ciphertexts: the block's ciphertexts, in order.

    Returns:
        SHA-256 (hex) of their comma-separated hex forms.
    """
    return hashlib.sha256(b','.join(format(c, 'x').encode() for c in ciphertexts)).hexdigest()


@dataclass(frozen=True)
class EncryptedDay:
    meter: str
    day: str
    feeder: str
    blocks: tuple[tuple[str, tuple[int, ...]], ...]  # ((key_id, (c0, c1, ...)), ...) sorted by key id
    signature: bytes = b''

    def canonical(self) -> bytes:
        return canonical_bytes(DOMAIN, {'day': self.day, 'feeder': self.feeder, 'meter': self.meter,
                                        'ciphertexts': {k: block_hash(cs) for k, cs in self.blocks}})

    def signed(self, private_key: ed25519.Ed25519PrivateKey) -> 'EncryptedDay':
        return EncryptedDay(self.meter, self.day, self.feeder, self.blocks, private_key.sign(self.canonical()))

    def verify(self, registry: Mapping[str, ed25519.Ed25519PublicKey]) -> None:
        """Check that the meter is registered and signed exactly this day.

        An unknown meter and a bad signature get one answer (no meter name in it) after the same
        work, a signature check against a dummy key for the unknown one: the aggregator is no
        oracle of who is registered.

        Args:
            registry: participant -> Ed25519 public key.

        Raises:
            NotAuthenticated: the meter is not registered or the signature does not verify.
        """
        public_key = registry.get(self.meter)
        try:
            (public_key or _UNKNOWN).verify(self.signature, self.canonical())
            if public_key is None:
                raise InvalidSignature
        except InvalidSignature:
            raise NotAuthenticated(NOT_AUTHENTICATED) from None

    # -- wire formats -------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps({'meter': self.meter, 'day': self.day, 'feeder': self.feeder,
                           'keys': {k: [ciphertext_text(c) for c in cs] for k, cs in self.blocks},
                           'signature': self.signature.hex()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Parse to_json's text.

        Raises:
            Malformed: not an object with "keys".
            ValueError, KeyError, TypeError, AttributeError, RecursionError: not JSON, or a field
                missing or of the wrong type.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict) or not isinstance(raw.get('keys'), dict):
            raise Malformed('expected an object with "keys"')
        blocks = tuple(sorted((str(k), tuple(ciphertext_from_text(c) for c in cs))
                              for k, cs in raw['keys'].items()))
        return cls(str(raw['meter']), str(raw['day']), str(raw['feeder']), blocks, bytes.fromhex(raw['signature']))

    def to_proto(self) -> market_pb2.EncryptedDay:
        return market_pb2.EncryptedDay(
            meter=self.meter, day=self.day, feeder=self.feeder, signature=self.signature,
            keys=[market_pb2.KeyCiphertexts(key_id=k, ciphertexts=[_int_bytes(c) for c in cs])
                  for k, cs in self.blocks])

    @classmethod
    def from_proto(cls, message: market_pb2.EncryptedDay) -> Self:
        blocks = tuple(sorted((b.key_id, tuple(int.from_bytes(c, 'big') for c in b.ciphertexts)) for b in message.keys))
        return cls(message.meter, message.day, message.feeder, blocks, bytes(message.signature))


def encrypt_day(meter: str, day: str, feeder: str, values: Sequence[int], public_keys: Iterable[PublicKey],
                private_key: ed25519.Ed25519PrivateKey, standard: bool = False) -> EncryptedDay:
    """One meter's day for the aggregator.

    Args:
        meter, day, feeder: what the signature binds with the ciphertexts.
        values: [import_wh per slot] + [export_wh per slot].
        public_keys: the operator keys to encrypt under.
        private_key: the meter's participant key.
        standard: phe's r**n encryption instead of the fixed-base one.

    Returns:
        The signed EncryptedDay.

    Raises:
        BadParameter: values do not fit a key's layout.
    """
    blocks = tuple(sorted((k.key_id, tuple(k.encrypt_values(values, standard))) for k in public_keys))
    return EncryptedDay(meter, day, feeder, blocks).signed(private_key)


def read_submissions(path: str) -> list[tuple[int, EncryptedDay]]:
    """The encrypted meter-days of a JSON-lines file.

    Args:
        path: one EncryptedDay's JSON a line (blank lines skipped).

    Returns:
        [(line, EncryptedDay)].

    Raises:
        InputError: unreadable, or a malformed line.
    """
    out = []
    for line, text in enumerate(read_text(path).splitlines(), 1):
        if not text.strip():
            continue
        try:
            out.append((line, EncryptedDay.from_json(text)))
        except (Malformed, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise InputError(path, line, 'submission', f'malformed encrypted day ({str(exc)[:80]})') from None
    return out
