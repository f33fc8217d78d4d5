"""Result shares sealed to their owner: X25519 + HKDF-SHA256 + ChaCha20-Poly1305.

A node encrypts a participant's result shares to the participant's registered X25519 key with a
fresh ephemeral key per reply, and binds the reply's context (round, participant, node, status,
request nonce) as associated data. Another node, the broker or anyone replaying the request gets
ciphertext it cannot open; a reply moved to another context fails authentication.
"""

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..common.errors import Tampered

__all__ = ['seal', 'open_sealed', 'SealError']

INFO = b'mpc-market/result-shares-key/v1'
NONCE = bytes(12)  # each key encrypts exactly one message


class SealError(Tampered):
    """A sealed reply that does not open with this key and context."""


def _key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=ephemeral_public + recipient_public, info=INFO).derive(shared)


def _raw(public_key: x25519.X25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def seal(recipient: x25519.X25519PublicKey, plaintext: bytes, context: bytes) -> tuple[bytes, bytes]:
    """Encrypt plaintext to recipient under a fresh ephemeral key, bound to context.

    Args:
        recipient: the participant's registered key.
        plaintext: the result shares.
        context: the associated data (round, participant, node, status, nonce).

    Returns:
        (ephemeral public key bytes, ciphertext).
    """
    ephemeral = x25519.X25519PrivateKey.generate()
    ephemeral_public = _raw(ephemeral.public_key())
    key = _key(ephemeral.exchange(recipient), ephemeral_public, _raw(recipient))
    return ephemeral_public, ChaCha20Poly1305(key).encrypt(NONCE, plaintext, context)


def open_sealed(private_key: x25519.X25519PrivateKey, ephemeral_public: bytes, ciphertext: bytes,
                context: bytes) -> bytes:
    """Decrypt what seal made for private_key's owner under the same context.

    Args:
        private_key: the participant's key.
        ephemeral_public: the reply's ephemeral public key bytes.
        ciphertext: the reply's ciphertext.
        context: the associated data it must have been sealed with.

    Returns:
        The plaintext.

    Raises:
        SealError: another key or context, or a malformed ephemeral key or ciphertext.
    """
    try:
        peer = x25519.X25519PublicKey.from_public_bytes(ephemeral_public)
        key = _key(private_key.exchange(peer), ephemeral_public, _raw(private_key.public_key()))
        return ChaCha20Poly1305(key).decrypt(NONCE, ciphertext, context)
    except (ValueError, InvalidTag):
        raise SealError('result shares do not open with this participant\'s key') from None
