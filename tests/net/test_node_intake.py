"""Submission path of a node_services: three node services over mutual TLS on 127.0.0.1."""

import time

import grpc
import numpy as np
import pytest

from mpc_market.common import keys
from mpc_market.mpc import field as ff
from mpc_market.net import messages
from mpc_market.net.store import now_ms
from mpc_market.net.submit import SubmitError
from mpc_market.rpc import market_pb2, market_pb2_grpc

from helpers import TOML, order_values, sealed


def test_honest_submission_reaches_every_node_and_shares_recombine(node_services):
    d, submitter, stores, _, _ = node_services
    values = order_values([('alice', 0, 'sell', 300, '0.12'), ('alice', 1, 'buy', 40, '0.18')], 'alice')
    envelope, receipts = submitter.submit('r1', 'alice', keys.load_participant_key(d, 'alice'), values)
    assert [r.node_index for r in receipts] == [0, 1, 2]
    packages = [store.submissions('r1', 'order')['alice'][3] for store in stores]
    shares = [ff.to_ints(np.frombuffer(p, dtype='<u4').reshape(ff.LIMBS, *values.shape)) for p in packages]
    secrets, consistent = ff.recombine(shares, 1)
    assert consistent.all() and (secrets == values.astype(object)).all()
    assert [store.count('r1') for store in stores] == [1, 1, 1]


def test_attacks_are_rejected_with_clear_errors_and_nothing_stored(node_services):
    d, submitter, stores, _, _ = node_services
    alice, bob = keys.load_participant_key(d, 'alice'), keys.load_participant_key(d, 'bob')
    values = order_values([('alice', 0, 'sell', 300, '0.12')], 'alice')
    stub = market_pb2_grpc.NodeStub(submitter.channels[0])
    shares = ff.share_values(values[None], 1, 3)
    packages = [s.astype('<u4').tobytes() for s in shares]

    def send(envelope, signature, package=packages[0], node_index=0, participant='alice'):
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitOrder(market_pb2.Submission(round_id=envelope.round_id, participant=participant,
                                                   envelope=envelope.to_json().encode(), signature=signature,
                                                   node_index=node_index, package=package), timeout=10)
        return info.value.code(), info.value.details()

    env, sig = sealed(alice, 'r1', 'alice', packages, stores[0])
    mallory = messages.Envelope('r1', 'mallory', env.nonce, env.package_hashes, 0, 'order', env.params_sha256)
    unknown = send(mallory, sig, participant='mallory')
    assert unknown == (grpc.StatusCode.UNAUTHENTICATED,
                       'node 0: not authenticated: no valid signature of a registered mallory')
    assert send(env, sig, participant='bob')[0] == grpc.StatusCode.INVALID_ARGUMENT  # request != envelope
    forged, forged_sig = sealed(bob, 'r1', 'alice', packages, stores[0])
    assert send(forged, forged_sig) == (grpc.StatusCode.UNAUTHENTICATED,
                                        'node 0: not authenticated: no valid signature of a registered alice')
    code, details = send(env, sig, package=packages[0][:-1] + bytes([packages[0][-1] ^ 1]))  # never a no-op
    assert code == grpc.StatusCode.DATA_LOSS and 'tampered' in details
    assert send(env, sig, node_index=1)[0] == grpc.StatusCode.INVALID_ARGUMENT
    other, other_sig = messages.seal(alice, 'r2', 'alice', packages, params_sha256='0' * 64)
    assert send(other, other_sig)[0] == grpc.StatusCode.NOT_FOUND  # unknown round (as for status and results)
    bad = bytearray(packages[0])
    bad[-1] = 0xFF  # top limb of the last share >= 2^31: not a field element
    bad_env, bad_sig = sealed(alice, 'r1', 'alice', [bytes(bad)] + packages[1:], stores[0])
    assert 'not a field element' in send(bad_env, bad_sig, package=bytes(bad))[1]
    short_env, short_sig = sealed(alice, 'r1', 'alice', [packages[0][:32]] + packages[1:], stores[0])
    assert 'malformed package' in send(short_env, short_sig, package=packages[0][:32])[1]
    assert stores[0].count('r1') == 0
    for _ in range(20):  # a flood of forgeries in alice's name does not use up alice's quota
        send(forged, forged_sig)
    submitter.submit('r1', 'alice', alice, values)  # the honest one still goes through
    code, details = send(*submitter_last(stores[0]))
    assert code == grpc.StatusCode.ALREADY_EXISTS and 'replayed' in details


def submitter_last(store):
    nonce, envelope_json, signature, package = store.submissions('r1', 'order')['alice']
    return messages.Envelope.from_json(envelope_json), signature, package


def test_late_orders_and_flooding(node_services):
    d, submitter, stores, _, _ = node_services
    carol = keys.load_participant_key(d, 'carol')
    values = order_values([('carol', 0, 'buy', 30, '0.15')], 'carol')
    late = now_ms() - 1
    for store in stores:
        store.open_round('late', [0, 1], late, TOML)
    with pytest.raises(SubmitError, match='node 0 .* closed'):
        submitter.submit('late', 'carol', carol, values)
    # burst of 8, then 1/s: a flood of valid submissions from carol's own key is cut off...
    errors = [submitter.submit_many('r1', [('carol', carol, values)])['carol'] for _ in range(12)]
    accepted = [e is None for e in errors]
    assert accepted[:5] == [True] * 5 and 5 <= sum(accepted) <= 9  # the burst (the late try used a token)
    assert any(e and 'rate limit' in e for e in errors[sum(accepted):])
    bob = keys.load_participant_key(d, 'bob')
    assert submitter.submit_many('r1', [('bob', bob, order_values([('bob', 0, 'sell', 9, '0.1')], 'bob'))]) == \
        {'bob': None}


def test_node_down_is_named_and_can_be_retried(node_services):
    d, submitter, stores, servers, _ = node_services
    alice = keys.load_participant_key(d, 'alice')
    values = order_values([('alice', 0, 'sell', 300, '0.12')], 'alice')
    servers[2].stop(None)
    time.sleep(0.2)
    submitter.timeout = 3
    with pytest.raises(SubmitError, match=r'node 2 \(localhost:\d+\) did not accept: UNAVAILABLE'):
        submitter.submit('r1', 'alice', alice, values)
    nonces = {store.submissions('r1', 'order').get('alice', ('-',))[0] for store in stores[:2]}
    assert len(nonces) == 1  # the nodes that did accept hold the same envelope; node 2 has none
    assert stores[2].count('r1') == 0


def test_batch_submission_isolates_each_participant(node_services):
    d, submitter, stores, servers, addresses = node_services
    names = ['alice', 'bob', 'carol']
    keys_ = [keys.load_participant_key(d, p) for p in names]
    values = np.zeros((3, 2, _width(stores[0])), dtype=np.uint64)
    forged = keys.load_participant_key(d, 'alice')  # carol's envelope signed by alice: rejected alone
    outcome = submitter.submit_batch('r1', names, [keys_[0], keys_[1], forged], values)
    assert outcome['alice'] is None and outcome['bob'] is None
    assert 'not authenticated' in outcome['carol'] and 'node 0' in outcome['carol']
    for store in stores:
        assert sorted(store.submissions('r1', 'order')) == ['alice', 'bob']


def _width(store):
    from mpc_market.net.node_intake import package_values
    return package_values(store.round('r1'), 'order') // 2


def reading_values(participant, orders, net_of, slots=(0, 1)):
    """The participant's reading package values (slots, width), witnesses against its orders."""
    from decimal import Decimal

    from mpc_market.market.book import Book, encode_readings
    from mpc_market.market.orders import Order

    from helpers import CONFIG
    book = Book(CONFIG, [Order(p, s, side, e, Decimal(lim)) for p, s, side, e, lim in orders],
                extra_pairs=[(participant, s) for s in slots])
    return encode_readings(book, net_of, [book.participant_index[participant]])[0]


def test_reading_attacks_are_refused_with_clear_status_and_nothing_stored(node_services):
    """Meter readings: not before the round cleared, not after the deadline, not in another's name,
    not replayed, not tampered, not with an order's signature; the honest upload still goes through."""
    d, submitter, stores, _, _ = node_services
    alice, bob = keys.load_participant_key(d, 'alice'), keys.load_participant_key(d, 'bob')
    start = now_ms()
    for store in stores:
        store.open_round('m1', [0, 1], start + 60_000, TOML, readings_deadline_ms=start + 600_000, day='2026-12-01')
        store.open_round('late', [0, 1], start + 1, TOML, readings_deadline_ms=start + 2)
    values = reading_values('alice', [('alice', 0, 'sell', 300, '0.12')], {('alice', 0): -280, ('alice', 1): 15})
    with pytest.raises(SubmitError, match='FAILED_PRECONDITION: node 0: round m1 is open: meter readings are taken '
                                          'once it has cleared'):
        submitter.submit('m1', 'alice', alice, values, kind='readings')
    for store in stores:
        for round_id in ('m1', 'late'):
            store.put_results(round_id, {'alice': ('cleared', b'')}, '{}', b'sig', [30, 30])
    time.sleep(0.01)
    with pytest.raises(SubmitError, match='FAILED_PRECONDITION: node 0: round late: the readings deadline has passed'):
        submitter.submit('late', 'alice', alice, values, kind='readings')

    stub = market_pb2_grpc.NodeStub(submitter.channels[0])
    packages = [s.astype('<u4').tobytes() for s in ff.share_values(values[None], 1, 3)]

    def send(envelope, signature, package=packages[0], participant='alice'):
        with pytest.raises(grpc.RpcError) as info:
            stub.SubmitReadings(market_pb2.Submission(round_id='m1', participant=participant, node_index=0,
                                                      envelope=envelope.to_json().encode(), signature=signature,
                                                      package=package), timeout=10)
        return info.value.code(), info.value.details()

    forged, forged_sig = sealed(bob, 'm1', 'alice', packages, stores[0], kind='readings')  # bob in alice's name
    assert send(forged, forged_sig)[0] == grpc.StatusCode.UNAUTHENTICATED
    as_order, order_sig = sealed(alice, 'm1', 'alice', packages, stores[0])  # an order's signature, as readings
    assert send(as_order, order_sig)[0] == grpc.StatusCode.UNAUTHENTICATED
    env, sig = sealed(alice, 'm1', 'alice', packages, stores[0], kind='readings')
    code, details = send(env, sig, package=packages[0][:-1] + bytes([packages[0][-1] ^ 1]))  # never a no-op
    assert code == grpc.StatusCode.DATA_LOSS and 'tampered' in details
    assert [store.count('m1', 'readings') for store in stores] == [0, 0, 0]
    assert [store.count('late', 'readings') for store in stores] == [0, 0, 0]

    submitter.submit('m1', 'alice', alice, values, kind='readings')
    assert [store.count('m1', 'readings') for store in stores] == [1, 1, 1]
    nonce, envelope_json, signature, package = stores[0].submissions('m1', 'readings')['alice']
    replay = messages.Envelope.from_json(envelope_json, 'readings')
    code, details = send(replay, signature, package)
    assert code == grpc.StatusCode.ALREADY_EXISTS and 'replayed' in details
    assert stores[0].count('m1', 'order') == 0  # readings never land as orders
    reply = stub.SubmitBatch(market_pb2.SubmissionBatch(kind='bogus', orders=[market_pb2.Submission(
        round_id='m1', participant='alice', node_index=0, envelope=env.to_json().encode(), signature=sig,
        package=packages[0])]), timeout=10)
    assert reply.outcomes[0].code == 'INVALID_ARGUMENT' and 'unknown kind' in reply.outcomes[0].error


def test_a_batch_receipt_is_one_signature_over_exactly_what_was_sent(node_services):
    """Batches are acknowledged with one node signature per batch; a forged or reshuffled batch
    receipt fails every item of the batch, and a refused item is never covered."""
    d, submitter, stores, _, _ = node_services
    names = ['alice', 'bob', 'carol']
    private = [keys.load_participant_key(d, p) for p in names]
    values = np.stack([order_values([(p, 0, 'sell', 10 + k, '0.12')], p) for k, p in enumerate(names)])
    prepared = submitter._requests('r1', names, private, values)
    bad = prepared[2][1][0]
    bad.package = bad.package[:-1] + bytes([bad.package[-1] ^ 1])  # carol's package to node 0 altered in transit
    stub = market_pb2_grpc.NodeStub(submitter.channels[0])
    reply = stub.SubmitBatch(market_pb2.SubmissionBatch(orders=[r[0] for _, r in prepared]), timeout=10)
    endpoint = submitter.endpoints[0]
    failed = submitter._check_batch_receipt(endpoint, names, prepared, reply)
    assert list(failed) == ['carol'] and 'DATA_LOSS' in failed['carol']
    assert stores[0].count('r1') == 2
    forged = market_pb2.ReceiptBatch()
    forged.CopyFrom(reply)
    forged.node_signature = bytes([reply.node_signature[0] ^ 1]) + reply.node_signature[1:]
    assert set(submitter._check_batch_receipt(endpoint, names, prepared, forged)) == set(names)
    swapped = market_pb2.ReceiptBatch()
    swapped.CopyFrom(reply)
    swapped.outcomes[0].receipt.nonce, swapped.outcomes[1].receipt.nonce = (reply.outcomes[1].receipt.nonce,
                                                                            reply.outcomes[0].receipt.nonce)
    assert set(submitter._check_batch_receipt(endpoint, names, prepared, swapped)) >= {'alice', 'bob'}
