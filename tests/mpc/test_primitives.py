"""Random bits, exact truncation, the approximate ratio and the comparison, run in real 3- and 7-party MPyC sessions."""

import random
import socket
import subprocess
import sys
import textwrap

import pytest

pytestmark = [pytest.mark.slow]

SCRIPT = textwrap.dedent('''
    import sys
    import numpy as np
    from mpyc.runtime import mpc
    from mpc_market.mpc.primitives import (FIELD, SECINT, RATIO_SLACK, to_secure, approx_ratio, exact_floor_pow2,
                                          floor_of_ratio_product, less_than_zero)
    from mpc_market.mpc.randbits import random_bits

    async def main():
        await mpc.start()
        bits = await random_bits(FIELD, 4000)
        values = np.asarray(await mpc.output(to_secure(bits)), dtype=np.int64)
        assert set(values.tolist()) <= {0, 1}, set(values.tolist())
        assert 1800 < values.sum() < 2200, values.sum()
        rng = np.random.default_rng(7)  # same public test values at every party
        f, y_bits = 40, 60
        ys = [0, 1, (1 << f) - 1, 1 << f, (1 << f) + 1, (1 << y_bits) - 1] + \\
             [int(v) for v in rng.integers(0, 1 << 62, 200) >> 2]
        q = await exact_floor_pow2(np.array(ys, dtype=object), f, y_bits)
        q = np.asarray(await mpc.output(to_secure(q)), dtype=object)
        assert list(q) == [y >> f for y in ys]

        # floor(x*N/T) from y = x * ceil(N 2^f / T): exact divisions, fractions just below 1, maxima
        bound, x_bits = (1 << 30) - 1, 16
        f = x_bits + bound.bit_length() + 1
        cases = [(1, 1, 1), (65535, bound, bound), (65535, bound - 1, bound), (3, 2, 3), (65534, 1, 65535),
                 (65535, 65534, 65535), (7, 7, 7), (1, 0, 5)]
        cases += [(int(x), int(n) % (int(t) + 1), int(t)) for x, n, t in
                  zip(rng.integers(1, 1 << x_bits, 150), rng.integers(0, bound, 150), rng.integers(1, bound, 150))]
        ys = [x * -(-(n << f) // t) for x, n, t in cases]
        q = await floor_of_ratio_product(np.array(ys, dtype=object), f, x_bits + f + 1, bound)
        q = np.asarray(await mpc.output(to_secure(q)), dtype=object)
        assert list(q) == [x * n // t for x, n, t in cases]

        # the flexibility clearing's ratio: strictly within (n 2^f / t, n 2^f / t + RATIO_SLACK)
        for f, bound in ((38, (1 << 21) - 1), (46, 1 << 26)):
            pairs = [(0, 1), (1, 1), (1, 2), (2, 3), (bound, bound), (bound - 1, bound), (1, bound), (0, bound)]
            pairs += [(int(n) % (int(t) + 1), int(t)) for n, t in
                      zip(rng.integers(0, bound, 300), rng.integers(1, bound + 1, 300))]
            rho = await approx_ratio(np.array([n for n, _ in pairs], dtype=object),
                                     np.array([t for _, t in pairs], dtype=object), f, bound)
            rho = [int(v) for v in await mpc.output(to_secure(rho))]
            assert all((n << f) < r * t < (n << f) + RATIO_SLACK * t for (n, t), r in zip(pairs, rho)), f
        # the comparison (MPyC's protocol on these random bits): every signed value of 8 bits, edges of 40
        for l, vs in ((8, list(range(-128, 128))), (40, [-(1 << 39), -(1 << 39) + 1, -1, 0, 1, (1 << 39) - 1]
                                                       + [int(v) - (1 << 39) for v in rng.integers(0, 1 << 40, 100)])):
            lt = await less_than_zero(np.array(vs, dtype=object) % FIELD.order, l)
            lt = [int(v) for v in await mpc.output(to_secure(lt))]
            assert lt == [int(v < 0) for v in vs], l
        await mpc.shutdown()
        print('OK', mpc.pid)

    mpc.run(main())
''')


def free_base_port(count: int) -> int:
    """A base port with count free consecutive ports: MPyC's local parties all default to 11365
    onwards, so two sessions at once (xdist workers) would otherwise connect to each other."""
    for _ in range(100):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                sockets.append(sock)
                sock.bind(('127.0.0.1', port))
            return base
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
    raise RuntimeError('no free consecutive ports')


@pytest.mark.parametrize('parties', [3, 7])  # 5 parties: the settlement tests run with 5 nodes
def test_random_bits_and_exact_truncation(tmp_path, parties):
    script = tmp_path / 'check.py'
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, str(script), '-M', str(parties), '-B', str(free_base_port(parties)),
                           '--no-log'], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0 and 'OK 0' in proc.stdout, proc.stdout + proc.stderr
