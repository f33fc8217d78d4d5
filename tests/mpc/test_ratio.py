"""primitives.approx_ratio (the flexibility clearing's pro-rata ratio): a Newton reciprocal whose
result must lie strictly inside (num * 2**f / den, num * 2**f / den + RATIO_SLACK) for every
0 <= num <= den <= bound, run in-process with one MPyC party (the 3- and 7-party runs are in
test_primitives). The bounds are the analysis in its docstring; a looser result makes the
floors of the allocation wrong, so every case is checked exactly."""

import asyncio

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_market.mpc.inprocess import single_party_runtime

from helpers import run_examples

MPC = single_party_runtime()
from mpc_market.mpc import primitives  # noqa: E402  (after the runtime is set up for one party)


def ratios(pairs, f, bound):
    """approx_ratio of the (num, den) pairs, opened."""
    async def run():
        await MPC.start()
        num = np.array([a for a, _ in pairs], dtype=object)
        den = np.array([b for _, b in pairs], dtype=object)
        rho = await primitives.open_values(await primitives.approx_ratio(num, den, f, bound))
        await MPC.shutdown()
        return [int(v) for v in rho]
    return MPC.run(run())


def assert_within(pairs, rhos, f):
    for (num, den), rho in zip(pairs, rhos, strict=True):
        assert (num << f) < rho * den < (num << f) + primitives.RATIO_SLACK * den, (num, den, f, rho)


EDGES = [(0, 1), (1, 1), (1, 2), (1, 3), (2, 3), (3, 4)]


@pytest.mark.parametrize('f, bound', [(20, 1), (38, (1 << 21) - 1), (44, (1 << 25) - 1), (46, 1 << 26), (12, 1000)])
def test_edges(f, bound):
    pairs = EDGES + [(0, bound), (bound, bound), (bound - 1, bound), (1, bound)]
    pairs += [(p, p) for p in (2, 4, 1 << (bound.bit_length() - 1))] + [(p - 1, p) for p in (2, 1 << 20, 1 << 21)]
    pairs = [(a, b) for a, b in pairs if 0 <= a <= b <= bound and b >= 1]
    assert_within(pairs, ratios(pairs, f, bound), f)


@settings(max_examples=run_examples(25), deadline=None)
@given(st.integers(1, 26).flatmap(lambda bits: st.tuples(
    st.just((1 << bits) - 1), st.integers(bits + 1, 46),
    st.lists(st.integers(1, (1 << bits) - 1).flatmap(lambda den: st.tuples(st.integers(0, den), st.just(den))),
             min_size=1, max_size=40))))
def test_random(case):
    bound, f, pairs = case
    assert_within(pairs, ratios(pairs, f, bound), f)


def test_precision_is_checked():
    """Parameters whose values would wrap the field are refused, not computed wrongly."""
    with pytest.raises(primitives.BadParameter):
        primitives.ratio_precision(120, 60)
    # a comparison whose masked opening would wrap GF(2^127 - 1): refused before any share is sent
    too_wide = 127 - primitives.SEC_PARAM - 1
    with pytest.raises(primitives.BadParameter, match='cannot be masked'):
        asyncio.run(primitives.less_than_zero(np.zeros(3, dtype=object), too_wide))


def test_one_partys_random_bits_are_uniform_bits_and_exact_floors_hold():
    # a single party's bits are local random bits (no square roots); the truncations built on them stay exact
    from mpc_market.mpc.randbits import random_bits

    async def run():
        await MPC.start()
        bits = await random_bits(primitives.FIELD, 20000)
        ys = np.array([0, 1, (1 << 40) - 1, 1 << 40, (1 << 60) - 1] + [int(v) for v in range(0, 1 << 60, 1 << 52)],
                      dtype=object)
        floors = await primitives.open_values(await primitives.exact_floor_pow2(ys, 40, 60))
        await MPC.shutdown()
        return [int(b) for b in bits], [int(v) for v in floors], [int(y) >> 40 for y in ys]
    bits, floors, expected = MPC.run(run())
    assert set(bits) == {0, 1} and 9500 < sum(bits) < 10500
    assert floors == expected
