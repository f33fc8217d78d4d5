"""Secret-shared uniformly random bits, fast for three nodes (m = 3, t = 1).

MPyC makes a random bit from a PRSS random r, opening r^2 and a modular square root per bit
(~10 us per bit here). With three nodes the PRSS keys give a cheaper way. Key {i, j} is held
by nodes i and j; each key yields a pseudorandom sign b_ij = +-1, and the bit is
(1 + b01*b02*b12) / 2. No single node knows all three signs, so the bit is uniform to it.

  node 0 knows c = b01*b02 and shares it with a degree-1 polynomial g whose value at node 1's
     point is a pseudorandom a (key {0,1}); it sends only g(3) to node 2.
  nodes 1 and 2 know b12, so b12*g(2) and b12*g(3) lie on a line through (0, b).
  they re-randomize that line with a pseudorandom slope d (key {1,2}) and give node 0 its
     point as two messages masked by a pseudorandom u (key {1,2}), which node 0 adds.

Three messages of n field elements per n bits, no multiplications, no square roots.
A single party (m = 1, the in-process runs) holds its values itself: its bits are local random
bits. For other (m, t), or without PRSS, MPyC's own np_random_bits is used.
"""

import hashlib
import os
from typing import Any

import numpy as np
from mpyc.runtime import mpc

from . import field as ff
from . import mpyc_internals as internals

P = ff.MODULUS
INV2 = (P + 1) // 2


def _stream(key: bytes, uci: bytes, label: bytes, nbytes: int) -> bytes:
    return hashlib.shake_128(key + b'mpc-market/randbits' + uci + label).digest(nbytes)


def _field_elements(key: bytes, uci: bytes, label: bytes, n: int) -> np.ndarray:
    """n pseudorandom elements: 127 bits each (bias 2^-127 towards 0)."""
    raw = np.frombuffer(_stream(key, uci, label, 16 * n), dtype=np.uint64).reshape(2, n)
    high = (raw[1] & np.uint64((1 << 63) - 1)).astype(object)
    return ((high << 64) + raw[0].astype(object)) % P


def _signs(key: bytes, uci: bytes, label: bytes, n: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(_stream(key, uci, label, (n + 7) // 8), dtype=np.uint8))[:n]
    return 1 - 2 * bits.astype(np.int64)  # +-1


async def random_bits(field: Any, n: int) -> np.ndarray:
    """Shares of n uniformly random bits.

    Args:
        field: the MPyC finite field class (an MPyC type: Any).
        n: how many bits.

    Returns:
        Object array (n,) of shares mod p.
    """
    if n == 0:
        return np.zeros(0, dtype=object)
    if len(mpc.parties) == 1:   # a share is the value itself: nothing to hide from anyone else
        return np.unpackbits(np.frombuffer(os.urandom((n + 7) // 8), dtype=np.uint8))[:n].astype(object)
    if len(mpc.parties) != 3 or mpc.threshold != 1 or mpc.options.no_prss:
        return (await mpc.np_random_bits(field, n)).value
    keys, uci, me = internals.prss_keys(mpc), internals.prss_uci(mpc), mpc.pid
    round1, round2 = {0: [2], 1: [0], 2: []}, {0: [], 1: [], 2: [0]}
    if me == 0:
        c = (_signs(keys[(0, 1)], uci, b'b01', n) * _signs(keys[(0, 2)], uci, b'b02', n)).astype(object)
        a = _field_elements(keys[(0, 1)], uci, b'a', n)
        g3 = (3 * a - c) * INV2 % P  # g(x) = c + (a - c) x / 2: g(0) = c, g(2) = a
        from_1 = (await mpc.transfer(g3, sender_receivers=round1))[0]
        from_2 = (await mpc.transfer(None, sender_receivers=round2))[0]
        share = (from_1 + from_2) % P
    else:
        b12 = _signs(keys[(1, 2)], uci, b'b12', n).astype(object)
        slope = _field_elements(keys[(1, 2)], uci, b'd', n)
        mask = _field_elements(keys[(1, 2)], uci, b'u', n)
        if me == 1:
            a = _field_elements(keys[(0, 1)], uci, b'a', n)
            share = (b12 * a + 2 * slope) % P  # h(2)
            await mpc.transfer((2 * share + mask) % P, sender_receivers=round1)
            await mpc.transfer(None, sender_receivers=round2)
        else:
            g3 = (await mpc.transfer(None, sender_receivers=round1))[0]
            share = (b12 * g3 + 3 * slope) % P  # h(3)
            await mpc.transfer((-share - mask) % P, sender_receivers=round2)
    return (1 + share) * INV2 % P
