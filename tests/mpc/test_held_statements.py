"""The nodes' signed statements of which envelopes they hold (mpc.node.parse_held_statement): a
statement counts only as the sender's signature over exactly the canonical schema of its round."""

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mpc_market.common.errors import Malformed, Tampered
from mpc_market.mpc.node import READINGS_AGREEMENT_DOMAIN, held_statement, parse_held_statement

HELD = {'alice': 'a' * 64, 'bob': 'b' * 64}


def signed(key, body):
    return body, key.sign(body)


def test_a_signed_canonical_statement_is_read_back():
    key = Ed25519PrivateKey.generate()
    body = held_statement('r1', 2, HELD)
    assert parse_held_statement(signed(key, body), 2, 'r1', key.public_key()) == HELD


def test_every_lie_about_a_statement_is_refused():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = held_statement('r1', 2, HELD)
    with pytest.raises(Tampered, match='bad signature'):
        parse_held_statement(signed(other, body), 2, 'r1', key.public_key())     # another node's key
    with pytest.raises(Malformed, match='another round or node'):
        parse_held_statement(signed(key, body), 1, 'r1', key.public_key())      # claimed for another sender
    with pytest.raises(Malformed, match='another round or node'):
        parse_held_statement(signed(key, body), 2, 'r2', key.public_key())      # replayed into another round
    with pytest.raises(Malformed, match='not an envelope statement'):           # a readings statement
        parse_held_statement(signed(key, held_statement('r1', 2, HELD, READINGS_AGREEMENT_DOMAIN)), 2, 'r1',
                             key.public_key())
    spaced = body.replace(b'"node_index":2', b'"node_index": 2')  # the same fields, not the signed bytes' form
    assert spaced != body
    with pytest.raises(Malformed, match='not canonical'):
        parse_held_statement(signed(key, spaced), 2, 'r1', key.public_key())
    for message in (None, b'x', (body,), (body, 'sig'), [body, key.sign(body)], (body, b'', b'')):
        with pytest.raises(Malformed, match='malformed'):
            parse_held_statement(message, 2, 'r1', key.public_key())
    for bad in (b'{', b'[]', b'{"round_id": "r1", "node_index": 2, "held": [["../x", "' + b'a' * 64 + b'"]]}',
                b'{"round_id": "r1", "node_index": 2, "held": [["alice", "zz"]]}'):
        with pytest.raises(Malformed):
            parse_held_statement(signed(key, b'mpc-market/held-envelopes/v1\n' + bad), 2, 'r1', key.public_key())
