"""A market node process: one MPyC party clearing the job in a job directory.

    python -m mpc_market.mpc.node --job DIR --index I --parties HOST:PORT,HOST:PORT,...

The node reads only job.json and its own node{I}/ files, and writes node{I}/results.npy
(its result shares) and node{I}/public.json (the opened public outputs).
"""

import argparse
import asyncio
import json
import os
import sys
import time


def main(argv=None):
    parser = argparse.ArgumentParser(prog='mpc_market.mpc.node')
    parser.add_argument('--job', required=True)
    parser.add_argument('--index', type=int, required=True)
    parser.add_argument('--parties', required=True, help='comma-separated host:port of all nodes')
    parser.add_argument('--threshold', type=int)
    parser.add_argument('--peers', action='store_true',
                        help='scenario S1: this node is also participant INDEX and shares its own orders')
    args = parser.parse_args(argv)

    mpyc_args = [sys.argv[0], '-I', str(args.index), '--no-log']
    for address in args.parties.split(','):
        mpyc_args += ['-P', address]
    if args.threshold is not None:
        mpyc_args += ['-T', str(args.threshold)]
    sys.argv = mpyc_args  # the MPyC runtime is configured from sys.argv at import

    import numpy as np
    from mpyc.runtime import mpc

    from ..jobs import JobSpec, node_dir, save_array, write_json
    from .protocol import MarketNode, peak_rss_mb

    spec = JobSpec.load(args.job)
    own = node_dir(args.job, args.index)
    async def run():
        started = time.perf_counter()
        await mpc.start()
        while not os.path.exists(os.path.join(own, 'ready')):  # packages still being written
            await asyncio.sleep(0.02)
        shares = held = None
        if not args.peers:
            shares = np.load(os.path.join(own, 'shares.npy'), mmap_mode='r')
            with open(os.path.join(own, 'held.json')) as f:
                held = json.load(f)
        if args.peers:
            from .peers import exchange_packages
            shares, held = await exchange_packages(spec, np.load(os.path.join(own, 'own_orders.npy')))
        def progress(phase, done, total):  # node 0 reports; the local engine relays it
            if mpc.pid == 0:
                print(f'progress {phase} {done} {total}', flush=True)

        if os.environ.get('MPC_MARKET_FAIL_NODE') == str(args.index):  # fault injection for tests
            raise SystemExit('injected failure')
        node = MarketNode(spec, shares, held, progress)
        public, results = await node.run()
        if spec.settle:
            import time as _time
            from ..encoding import ReadingLayout
            from .settle import SettlementNode
            settle_started = _time.perf_counter()
            reading_layout = ReadingLayout((spec.max_reading_wh + spec.max_order_wh).bit_length(),
                                           spec.max_reading_wh.bit_length(), spec.max_reading_wh)
            price2 = node.deviation_price2
            readings = np.load(os.path.join(own, 'readings.npy'), mmap_mode='r')
            settled, retailer, meter_excluded = await SettlementNode(node, readings, reading_layout, price2).run(node.valid)
            save_array(os.path.join(own, 'settlement.npy'), settled)
            save_array(os.path.join(own, 'retailer.npy'), retailer)
            public['meter_excluded'] = meter_excluded
            node.timings['settlement'] = _time.perf_counter() - settle_started
        if args.peers:
            from .peers import own_results, return_results
            save_array(os.path.join(own, 'own_results.npy'), own_results(spec, await return_results(spec, results)))
        sent = sum(peer.protocol.nbytes_sent for peer in mpc.parties if peer.pid != mpc.pid)
        await mpc.shutdown()
        save_array(os.path.join(own, 'results.npy'), results)
        public['timings'] = {k: round(v, 4) for k, v in node.timings.items()}
        public['timings']['node_total'] = round(time.perf_counter() - started, 4)
        public['bytes_sent'] = sent
        public['peak_rss_mb'] = round(peak_rss_mb(), 1)
        public['peak_rss_mb_by_phase'] = node.peaks
        write_json(os.path.join(own, 'public.json'), public)

    profile_dir = os.environ.get('MPC_MARKET_PROFILE')  # developer aid: cProfile each node
    if profile_dir:
        import cProfile
        cProfile.runctx('mpc.run(run())', globals(), locals(), os.path.join(profile_dir, f'node{args.index}.prof'))
    else:
        mpc.run(run())


if __name__ == '__main__':
    main()
