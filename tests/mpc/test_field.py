"""Limb arithmetic over GF(2^127-1), Shamir sharing round trips and the order encoding."""

import random
from decimal import Decimal

import numpy as np
import pytest

from mpc_market.market.book import Book, Layout, encode_entry
from mpc_market.market.config import MarketConfig
from mpc_market.market.orders import Order
from mpc_market.mpc import field as ff


@pytest.mark.parametrize('threshold, parties', [(1, 3), (2, 5), (3, 7), (4, 9), (5, 11)])
def test_share_round_trip(threshold, parties):
    values = np.random.default_rng(1).integers(0, 1 << 40, size=(40, 7)).astype(np.uint64)
    shares = ff.share_values(values, threshold, parties)
    ints = [ff.to_ints(s) for s in shares]
    assert all(((i >= 0) & (i < ff.MODULUS)).all() for i in ints)
    secrets, consistent = ff.recombine(ints, threshold)
    assert (secrets == values.astype(object)).all() and consistent.all()
    # any t shares are uniformly random: a single share says nothing (sanity: not the value)
    assert (ints[0] != values.astype(object)).mean() > 0.99


def test_recombine_detects_inconsistent_share():
    shares = ff.share_values(np.arange(10, dtype=np.uint64), 1, 3)
    ints = [ff.to_ints(s) for s in shares]
    ints[2][4] = (ints[2][4] + 1) % ff.MODULUS
    _, consistent = ff.recombine(ints, 1)
    assert list(np.flatnonzero(~consistent)) == [4]


def test_limb_conversions_at_the_edges():
    values = np.array([0, 1, ff.MODULUS - 1, 1 << 126, (1 << 96) - 1, 1 << 64], dtype=object)
    assert (ff.to_ints(ff.from_ints(values)) == values).all()
    acc = ff.from_ints(values).astype(np.uint64)
    acc[0] += np.uint64(ff.MODULUS & 0xFFFFFFFF)  # still < 2**62 per limb
    assert (ff.to_ints(ff._normalize(acc)) == ((values + (ff.MODULUS & 0xFFFFFFFF)) % ff.MODULUS)).all()


def test_lincomb_and_sums_match_big_int_arithmetic():
    rng = random.Random(3)
    shares = ff.share_values(np.random.default_rng(2).integers(0, 70000, size=(25, 33)), 1, 3)[1]
    coefficients = [[rng.randrange(ff.MODULUS) for _ in range(33)] for _ in range(3)]
    ints = ff.to_ints(shares)
    expected = np.array([[sum(int(a) * c for a, c in zip(row, cv, strict=True)) % ff.MODULUS for cv in coefficients]
                         for row in ints], dtype=object)
    assert (ff.lincomb(shares, coefficients) == expected).all()
    assert (ff.sum_rows(shares, axis=0) == ints.sum(axis=0) % ff.MODULUS).all()
    assert (ff.signed(np.array([ff.MODULUS - 5, 5], dtype=object)) == np.array([-5, 5], dtype=object)).all()


def test_encoding_layout_and_vectorized_book():
    config = MarketConfig(Decimal('0.047'), Decimal('0.139'), Decimal('0.001'), 50000)
    layout = Layout.for_config(config)
    assert layout.levels == 93 and layout.has_slack
    assert layout.width == (2 * 93 + 3) + (2 * 93 + 2) + 2 * 16
    v = encode_entry(layout, 5, 300)
    assert v[layout.onehot].sum() == 1 and v[5] == 1 and v[layout.weighted][5] == 300
    assert sum(int(b) << i for i, b in enumerate(v[layout.bits])) == 300
    assert sum(int(b) << i for i, b in enumerate(v[layout.slack])) == 50000 - 300
    z = encode_entry(layout, None, 0)
    assert z[layout.no_order] == 1 and z[layout.weighted].sum() == 0
    orders = [Order('a', 0, 'sell', 100, Decimal('0.05')), Order('b', 7, 'buy', 7, Decimal('0.2')),
              Order('c', 0, 'sell', 5, Decimal('0.5'))]
    book = Book(config, orders)
    block = book.encode(range(3))
    for i, p in enumerate(book.participants):
        for j, s in enumerate(book.slots):
            order = book.order_of.get((p, s))
            expected = (encode_entry(layout, book.encoded_position(order), order.energy_wh) if order
                        else encode_entry(layout, None, 0))
            assert (block[i, j] == expected).all()
    assert book.positions[('c', 0)][0] is None  # sell above ceiling: cannot trade locally
    assert block[book.participant_index['c'], 0, layout.sell_out] == 1
