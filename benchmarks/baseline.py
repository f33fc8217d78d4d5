"""The textbook baseline: sort-based double-auction clearing in MPyC, as published private
markets do it. Run by the suites on the same orders as mpc_market, in the same run.

    python benchmarks/baseline.py ORDERS.json OUT.json -M3      (MPyC starts the 3 parties)

Per slot: every tradeable order becomes a record (key = 2 x level + [buy], ask Wh, bid Wh),
secret-shared by party 0; an oblivious Batcher sort (MPyC ``np_sort``) orders the records by key
(asks before bids at one level); prefix sums give S_i = asks up to record i and D_i = bids from
record i on; the traded volume is V = max_i min(S_i, D_i) and the price level is that of the
arg-max record (MPyC ``argmax``). Only V and the level are opened. O(n log^2 n) comparisons
per slot, against mpc_market's O(levels) per slot and O(1) per order.

``plain_clear`` is the same computation in the clear: the suites check the secure V equals it
and equals the traded volume of mpc_market's plaintext reference.
"""

import json
import sys
import time

import numpy as np


def records(orders, levels):
    """[(key, ask Wh, bid Wh)] of the tradeable orders [(level, side, Wh)] (untradeable: level outside 0..K-1)."""
    return [(2 * level + (side == 'buy'), energy if side == 'sell' else 0, energy if side == 'buy' else 0)
            for level, side, energy in orders if 0 <= level < levels]


def plain_clear(rows):
    """(V, level of the arg-max record or None) of one slot's records, in the clear."""
    if not rows:
        return 0, None
    rows = sorted(rows, key=lambda r: r[0])
    total_bids = sum(r[2] for r in rows)
    supply = bids_before = 0
    best, level = -1, None
    for key, ask, bid in rows:
        supply += ask
        volume = min(supply, total_bids - bids_before)
        bids_before += bid
        if volume > best:
            best, level = volume, key // 2
    return best, level


async def secure_clear(mpc, secint, rows, count):
    """(V, level) of one slot's records (party 0's; the others know only count), opened."""
    values = np.array(rows if mpc.pid == 0 else [(0, 0, 0)] * count, dtype=object).T
    shared = mpc.input(secint.array(values), senders=0)
    ordered = mpc.np_sort(shared, axis=-1, key=lambda a: a[0])
    supply = mpc.np_cumsum(ordered[1])
    bids = ordered[2]
    demand = mpc.sum(list(bids)) - (mpc.np_cumsum(bids) - bids)
    smaller = supply < demand
    volume = demand + smaller * (supply - demand)
    index, best = mpc.argmax(list(volume))
    level = mpc.sum(list(mpc.np_fromlist(mpc.unit_vector(index, count)) * ordered[0]))
    opened = await mpc.output([best, level])
    return int(opened[0]), int(opened[1]) // 2


def main():
    from mpyc.runtime import mpc
    orders_path, out_path = sys.argv[1], sys.argv[2]
    with open(orders_path) as f:
        job = json.load(f)
    secint = mpc.SecInt(job['bits'])

    async def run():
        await mpc.start()
        started = time.perf_counter()
        results = []
        for slot in job['slots']:
            rows = [tuple(r) for r in slot['records']]
            if rows:
                results.append(await secure_clear(mpc, secint, rows, len(rows)))
            else:
                results.append((0, None))
        seconds = time.perf_counter() - started
        await mpc.shutdown()
        if mpc.pid == 0:
            with open(out_path, 'w') as f:
                json.dump({'seconds': seconds, 'results': results}, f)
    mpc.run(run())


if __name__ == '__main__':
    main()
