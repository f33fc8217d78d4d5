"""The MPyC internals the nodes rely on, the closed wire codec that replaces pickle, and the
certificate-to-party rule of the MPC links."""

import hashlib
import inspect
import pickle
import struct
import time
import tracemalloc

import mpyc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpyc import asyncoro, finfields, runtime, thresha

from mpc_market.mpc import field as ff
from mpc_market.mpc import mpyc_internals as internals
from mpc_market.mpc import wire

from helpers import run_examples

# SHA-256 (first 16 hex digits) of the source of every MPyC internal that mpyc_internals patches,
# replaces or calls, as reviewed for MPyC 0.11. A change in MPyC fails this test: review
# mpyc_internals.py against the new source, then update the digest and SUPPORTED_VERSIONS.
REVIEWED = {
    'Runtime.start': '18dd148916e2a14f',              # replaced by internals.start
    'Runtime.transfer': '928d522a69f78928',           # pickle -> wire
    'Runtime._reshare': 'a14868d7373424b5',           # pickle -> wire; called by internals.reshare
    'Runtime._np_randoms': '362352491b569be9',
    'Runtime._prss_uci': '514165f3ed699c54',
    'Runtime.input': '6fb4e522c3483acd',              # pickle -> wire
    'Runtime.output': '80a9d1ce95600597',             # pickle -> wire
    'Runtime.shutdown': '452a53cf95de4027',
    'Runtime._prss_keys_to_peer': 'f5356a2a668c0fba',
    'Runtime._prss_keys_from_peer': 'c8776b8ca0e9fb6f',
    'MessageExchanger': '0c151ed2b1460f16',           # subclassed by AuthenticatedExchanger
    'thresha.np_random_split': '47864c63799f840c',
    'thresha._recombination_vector': '1e2b3a75ad4bfde6',
}


def _sources():
    r = runtime.Runtime
    return {'Runtime.start': r.start, 'Runtime.transfer': r.transfer, 'Runtime._reshare': r._reshare,
            'Runtime._np_randoms': r._np_randoms, 'Runtime._prss_uci': r._prss_uci, 'Runtime.input': r.input,
            'Runtime.output': r.output, 'Runtime.shutdown': r.shutdown,
            'Runtime._prss_keys_to_peer': r._prss_keys_to_peer, 'Runtime._prss_keys_from_peer': r._prss_keys_from_peer,
            'MessageExchanger': asyncoro.MessageExchanger,
            'thresha.np_random_split': internals._original_np_random_split,
            'thresha._recombination_vector': internals._original_recombination_vector}


def test_mpyc_internals_are_the_reviewed_ones():
    assert mpyc.__version__ in internals.SUPPORTED_VERSIONS
    digests = {name: hashlib.sha256(inspect.getsource(obj).encode()).hexdigest()[:16]
               for name, obj in _sources().items()}
    assert digests == REVIEWED
    assert runtime.pickle is not None and hasattr(thresha, '_recombination_vector')


def test_after_install_mpyc_unpickles_nothing(tmp_path):
    internals.install()
    assert runtime.pickle.loads is wire.loads and runtime.pickle.dumps is wire.dumps
    marker = tmp_path / 'pwned'

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), 'w'))
    with pytest.raises(wire.WireError):
        runtime.pickle.loads(pickle.dumps(Exploit()))
    assert not marker.exists()


values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**300, 2**300) | st.binary(max_size=64) | st.text(max_size=16),
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner), max_leaves=20)


@settings(max_examples=run_examples(200), deadline=None)
@given(values)
def test_wire_round_trip(value):
    assert wire.loads(wire.dumps(value)) == value


@settings(max_examples=run_examples(50), deadline=None)
@given(st.lists(st.integers(-2**200, 2**200), max_size=40), st.sampled_from([(-1,), (2, -1)]))
def test_wire_round_trip_of_share_arrays(ints, shape):
    if shape == (2, -1) and len(ints) % 2:
        ints = ints[:-1]
    array = np.array(ints, dtype=object).reshape(shape) if ints else np.zeros((0,), dtype=object)
    back = wire.loads(wire.dumps(array))
    assert back.dtype == object and back.shape == array.shape and list(back.reshape(-1)) == list(array.reshape(-1))
    numeric = np.arange(24, dtype=np.uint32).reshape(2, 3, 4)
    assert (wire.loads(wire.dumps(numeric)) == numeric).all()


@settings(max_examples=run_examples(500), deadline=None)
@given(st.binary(max_size=200))
def test_wire_rejects_garbage_with_one_error(data):
    try:
        wire.loads(data)
    except wire.WireError:
        pass


def test_wire_refuses_other_types_and_oversize_claims():
    for obj in (object(), {1: 2}, 1.5, np.array([1.5])):
        with pytest.raises(wire.WireError):
            wire.dumps(obj)
    huge_list = bytes([wire.LIST]) + (2**32 - 1).to_bytes(4, 'little')
    huge_array = bytes([wire.INTARRAY]) + b'ob' + bytes([1]) + (2**40).to_bytes(8, 'little') + bytes([2])
    deep = bytes([wire.LIST]) + (1).to_bytes(4, 'little')
    for data in (huge_list, huge_array, deep * 100 + bytes([wire.NONE]), pickle.dumps([1, 2])):
        with pytest.raises(wire.WireError):
            wire.loads(data)



def _int_array_header(size, width, signed=0):
    return struct.pack('<B2sBQHB', wire.INTARRAY, b'ob', 1, size, width, signed)


def _list(items, tag=wire.LIST):
    return struct.pack('<BI', tag, len(items)) + b''.join(items)


def _decode_measured(data):
    """(value or the WireError, seconds, peak bytes traced) of wire.loads(data)."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        value = wire.loads(data)
    except wire.WireError as exc:
        value = exc
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return value, seconds, peak


def test_wire_refuses_amplifying_messages_quickly_in_small_memory():
    # The review's message: 20 kB of width-0 integer arrays decoded to 26.7 M elements (231 MiB),
    # 80 kB raised MemoryError. Each crafted message claims more elements than it has bytes.
    one_zero_array = _int_array_header(1 << 20, 0)
    review = _list([_int_array_header(20_000, 0)] * 1333)
    review_80k = _list([_int_array_header(80_000, 0)] * 5333)
    nested = _list([_list([_list([_int_array_header(400, 0)] * 10)] * 10)] * 10)
    tuples_of_arrays = _list([_list([_int_array_header(60, 0)] * 2, wire.TUPLE)] * 600)
    # width 1 but claiming, across many small arrays, more elements than the message holds
    width_one = _list([_int_array_header(4000, 1)] * 100 + [b'\x00' * 4000])
    signed = _list([_int_array_header(30_000, 1, signed=1) + b'\xff' * 3750] * 4)
    numeric = _list([struct.pack('<B2sBQ', wire.ARRAY, b'u1', 1, 3000) for _ in range(200)] + [b'\x00' * 3000])
    empty_width_zero = _int_array_header(0, 0)
    assert len(review) == 20_000
    for data in (one_zero_array, review, review_80k, nested, tuples_of_arrays, width_one, signed, numeric,
                 empty_width_zero):
        value, seconds, peak = _decode_measured(data)
        assert isinstance(value, wire.WireError), (len(data), type(value))
        assert seconds < 0.1 and peak < 256 << 10, (len(data), seconds, peak)


def test_wire_decodes_any_message_in_a_bounded_multiple_of_its_size():
    # Well-formed messages that maximise objects per byte (None, empty containers, negative
    # one-byte integers, empty arrays): decoding stays within 64 bytes per byte received.
    worst = {
        'nones': wire.dumps([None] * 20_000),
        'empty lists': wire.dumps([[]] * 4000),
        'nested empty lists': wire.dumps([[[[]]]] * 1000),
        'empty arrays': wire.dumps([np.zeros(0, dtype=object)] * 1300),
        'negative bytes': wire.dumps(np.full(20_000, -255, dtype=object)),
        'small ints': wire.dumps([300] * 3000),
        '0-d arrays': _list([struct.pack('<B2sBHB', wire.INTARRAY, b'ob', 0, 1, 1) + b'\x01\xff'] * 3000),
        'field elements': wire.dumps(np.full(2000, ff.MODULUS - 1, dtype=object)),
    }
    for name, data in worst.items():
        value, seconds, peak = _decode_measured(data)
        assert not isinstance(value, wire.WireError), name
        assert peak < 64 * len(data), (name, len(data), peak)


def test_every_honest_mpyc_message_round_trips():
    internals.install()
    field = finfields.GF(ff.MODULUS)
    secrets = field.array([0, 1, ff.MODULUS - 1, 12345, 2**64, 2**126])
    # input and _reshare: one row of shares per party, each sent alone, recombined by the receiver
    for split in (internals.np_random_split, internals._original_np_random_split):
        for t, m in ((1, 3), (2, 5), (3, 7)):
            rows = split(field, secrets, t, m)
            received = [wire.loads(wire.dumps(row)) for row in rows]
            assert all(isinstance(r, np.ndarray) and r.shape == secrets.value.shape for r in received)
            points = [(i + 1, received[i]) for i in range(t + 1)]
            assert list(thresha.np_recombine(field, points)) == list(secrets.value)
    # output: a flattened share array; transfer: the payloads the market nodes send
    shares = field.array(np.arange(24, dtype=object).reshape(2, 3, 4) * (2**100 + 7)).value
    back = wire.loads(wire.dumps(shares.reshape(-1)))
    assert back.dtype == object and list(back) == list(shares.reshape(-1))
    payloads = [None, b'\x01' * 32, (b'{"round": "r1"}', b'\x02' * 64), sorted({3, 1, 2}),
                [int(v) for v in secrets.value], field(5).value, (2 * 5 + 7) % ff.MODULUS,
                np.zeros(0, dtype=object), np.array([-3, 0, 2**130], dtype=object),
                np.arange(12, dtype=np.uint32).reshape(3, 4), [(0, 'node0'), (1, 'node1')]]
    for payload in payloads:
        back = wire.loads(wire.dumps(payload))
        if isinstance(payload, np.ndarray):
            assert back.dtype == payload.dtype and back.shape == payload.shape and (back == payload).all()
        else:
            assert back == payload


def _cert(*names):
    return {'subjectAltName': tuple(('DNS', n) for n in names)}


def test_only_a_node_certificate_names_a_party():
    assert internals.party_of_certificate(_cert('node2', 'MPyC party 2', 'host.example')) == 2
    assert internals.party_of_certificate(_cert('MPyC party 2')) is None            # no node name
    assert internals.party_of_certificate(_cert('node1', 'MPyC party 2')) is None   # names disagree
    assert internals.party_of_certificate(_cert('node1', 'MPyC party 1', 'node2', 'MPyC party 2')) is None
    assert internals.party_of_certificate({'subject': ((('commonName', 'MPyC party 0'),),)}) is None
    assert internals.party_of_certificate(None) is None


def _handshake(server_context, client_context):
    """Both sides of a TLS handshake over a socket pair: (server error, client error), None if it held."""
    import socket
    import ssl
    import threading
    left, right = socket.socketpair()
    errors = [None, None]

    def side(k, context, sock, **kwargs):
        try:
            with context.wrap_socket(sock, **kwargs) as tls:
                tls.settimeout(5)
                tls.sendall(b'x')
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            errors[k] = exc
    server = threading.Thread(target=side, args=(0, server_context, left), kwargs={'server_side': True})
    server.start()
    side(1, client_context, right, server_hostname='127.0.0.1')
    server.join(10)
    return errors


@pytest.mark.parametrize('default_paths', ['SSL_CERT_FILE', 'SSL_CERT_DIR'])
def test_the_mpc_links_trust_only_the_deployment_ca_whatever_the_system_trusts(tmp_path, monkeypatch, default_paths):
    """A node's MPyC TLS context trusts its deployment's CA alone: not OpenSSL's default verify paths
    (the system's CAs; here SSL_CERT_FILE or a hashed SSL_CERT_DIR holding a foreign CA that certified
    its own 'node 0' and 'node 1'); neither side of a link accepts them, the honest pair does. (Before,
    the connecting side trusted the default paths.)"""
    import shutil
    import ssl
    import subprocess

    from mpc_market.common import keys
    ours, foreign = str(tmp_path / 'ours'), str(tmp_path / 'foreign')
    for base in (ours, foreign):
        keys.create_ca(base)
        for i in (0, 1):
            keys.create_node(base, i, hosts=('127.0.0.1',))
    if default_paths == 'SSL_CERT_FILE':
        monkeypatch.setenv('SSL_CERT_FILE', f'{foreign}/ca/ca.pem')
        monkeypatch.setenv('SSL_CERT_DIR', str(tmp_path / 'none'))
    else:
        if not shutil.which('openssl'):
            pytest.skip('no openssl command to hash a CA directory')
        hashed = tmp_path / 'hashed'
        hashed.mkdir()
        shutil.copy(f'{foreign}/ca/ca.pem', hashed / 'foreign.pem')
        subprocess.run(['openssl', 'rehash', str(hashed)], check=True)
        monkeypatch.setenv('SSL_CERT_DIR', str(hashed))
        monkeypatch.setenv('SSL_CERT_FILE', str(tmp_path / 'none.pem'))
    listener = internals.tls_context(ssl.Purpose.CLIENT_AUTH, ours, 1)
    connector = internals.tls_context(ssl.Purpose.SERVER_AUTH, ours, 0)
    for context in (listener, connector):
        assert context.cert_store_stats()['x509_ca'] == 1
        assert context.get_ca_certs(binary_form=True) == [ssl.PEM_cert_to_DER_cert(open(f'{ours}/ca/ca.pem').read())]
    assert _handshake(listener, connector) == [None, None]
    # a foreign 'node 0' connecting to our node 1 (it trusts our CA, so only our side can refuse it)
    intruder = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=f'{ours}/ca/ca.pem')
    intruder.load_cert_chain(f'{foreign}/nodes/node0.pem', f'{foreign}/nodes/node0.key')
    server_error, _ = _handshake(listener, intruder)
    assert isinstance(server_error, ssl.SSLError) and 'certificate' in str(server_error).lower(), server_error
    # a foreign 'node 1' listening where our node 0 connects
    impostor = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=f'{ours}/ca/ca.pem')
    impostor.load_cert_chain(f'{foreign}/nodes/node1.pem', f'{foreign}/nodes/node1.key')
    _, client_error = _handshake(impostor, connector)
    assert isinstance(client_error, ssl.SSLError) and 'certificate' in str(client_error).lower(), client_error
