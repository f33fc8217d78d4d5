"""The MPyC internals the nodes rely on, the closed wire codec that replaces pickle, and the
certificate-to-party rule of the MPC links."""

import hashlib
import inspect
import pickle

import mpyc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mpyc import asyncoro, runtime, thresha

from mpc_market.mpc import mpyc_internals as internals
from mpc_market.mpc import wire

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


@settings(max_examples=200, deadline=None)
@given(values)
def test_wire_round_trip(value):
    assert wire.loads(wire.dumps(value)) == value


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-2**200, 2**200), max_size=40), st.sampled_from([(-1,), (2, -1)]))
def test_wire_round_trip_of_share_arrays(ints, shape):
    if shape == (2, -1) and len(ints) % 2:
        ints = ints[:-1]
    array = np.array(ints, dtype=object).reshape(shape) if ints else np.zeros((0,), dtype=object)
    back = wire.loads(wire.dumps(array))
    assert back.dtype == object and back.shape == array.shape and list(back.reshape(-1)) == list(array.reshape(-1))
    numeric = np.arange(24, dtype=np.uint32).reshape(2, 3, 4)
    assert (wire.loads(wire.dumps(numeric)) == numeric).all()


@settings(max_examples=500, deadline=None)
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


def _cert(*names):
    return {'subjectAltName': tuple(('DNS', n) for n in names)}


def test_only_a_node_certificate_names_a_party():
    assert internals.party_of_certificate(_cert('node2', 'MPyC party 2', 'host.example')) == 2
    assert internals.party_of_certificate(_cert('MPyC party 2')) is None            # no node name
    assert internals.party_of_certificate(_cert('node1', 'MPyC party 2')) is None   # names disagree
    assert internals.party_of_certificate(_cert('node1', 'MPyC party 1', 'node2', 'MPyC party 2')) is None
    assert internals.party_of_certificate({'subject': ((('commonName', 'MPyC party 0'),),)}) is None
    assert internals.party_of_certificate(None) is None
