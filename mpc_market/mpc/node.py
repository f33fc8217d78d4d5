"""A market node process: one MPyC party clearing the job in a job directory.

    python -m mpc_market.mpc.node --job DIR --index I --parties HOST:PORT,HOST:PORT,...

The node reads only job.json and its own node{I}/ files, and writes node{I}/results.npy
(its result shares) and node{I}/public.json (the opened public outputs).

With --deployment (a market node daemon's clearing run) held.json maps each participant this
node holds to the SHA-256 of its signed envelope, and job.json lists no participants: the nodes
first agree on the participants whose identical envelope all of them hold. With --ssl, MPyC
reads its TLS material from .config/ in the working directory. A lost peer ends the run at
once (MPyC itself would wait forever).
"""

import argparse
import asyncio
import json
import os
import sys
import time


_SHUTTING_DOWN = [False]


def _die_with_parent():
    """Linux: get SIGKILL when the node daemon dies, so no orphan keeps the MPyC port.

    Set here rather than in a preexec_fn: forking the multi-threaded gRPC daemon is unsafe."""
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get('MPC_MARKET_PARENT_PID', str(os.getppid())):
        raise SystemExit('error: the node daemon exited before the MPC party started')


def _abort_on_lost_peer():
    """Exit at once when a peer's connection drops before shutdown (MPyC would wait forever)."""
    from mpyc import asyncoro

    def connection_lost(self, exc):
        if not _SHUTTING_DOWN[0]:
            print(f'error: lost connection to node {self.peer_pid} during clearing', flush=True)
            os._exit(3)
        self.runtime.unset_protocol(self.peer_pid)
    asyncoro.MessageExchanger.connection_lost = connection_lost


async def agree_on_envelopes(spec, shares, held):
    """Keep the participants whose identical signed envelope every node holds.

    held: {participant: envelope SHA-256}, rows of shares in sorted(held) order. Sets
    spec.participants; returns (kept shares, kept participants, missing participants, kept rows).
    """
    import numpy as np
    from mpyc.runtime import mpc
    views = await mpc.transfer(sorted(held.items()))
    common = set(map(tuple, views[0])).intersection(*(set(map(tuple, v)) for v in views[1:]))
    everyone = set().union(*({p for p, _ in v} for v in views))
    kept = sorted(p for p, _ in common)
    row_of = {p: i for i, p in enumerate(sorted(held))}
    rows = np.array([row_of[p] for p in kept], dtype=np.int64)
    spec.participants = kept
    return np.ascontiguousarray(shares[:, rows]), kept, sorted(everyone - set(kept)), rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog='mpc_market.mpc.node')
    parser.add_argument('--job', required=True)
    parser.add_argument('--index', type=int, required=True)
    parser.add_argument('--parties', required=True, help='comma-separated host:port of all nodes')
    parser.add_argument('--threshold', type=int)
    parser.add_argument('--peers', action='store_true',
                        help='scenario S1: this node is also participant INDEX and shares its own orders')
    parser.add_argument('--deployment', action='store_true',
                        help='packages of a deployment round: agree on identical envelopes first')
    parser.add_argument('--ssl', action='store_true', help='MPyC over TLS (certificates in .config/)')
    args = parser.parse_args(argv)
    if args.deployment:
        _die_with_parent()

    mpyc_args = [sys.argv[0], '-I', str(args.index), '--no-log']
    for address in args.parties.split(','):
        mpyc_args += ['-P', address]
    if args.threshold is not None:
        mpyc_args += ['-T', str(args.threshold)]
    if args.ssl:
        mpyc_args += ['--ssl']
    sys.argv = mpyc_args  # the MPyC runtime is configured from sys.argv at import

    import numpy as np
    from mpyc.runtime import mpc

    from ..jobs import JobSpec, node_dir, save_array, write_json
    from .protocol import MarketNode, peak_rss_mb

    spec = JobSpec.load(args.job)
    own = node_dir(args.job, args.index)
    async def run():
        started = time.perf_counter()
        if args.deployment:
            _abort_on_lost_peer()
        await mpc.start()
        print('connected', flush=True)  # the daemon's watchdog: start-up is over
        stall = os.environ.get('MPC_MARKET_STALL_NODE', '').split(':')
        if stall[0] == str(args.index):  # fault injection for tests: a node busy (or hung) mid-clearing
            await asyncio.sleep(float(stall[1]))
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
        missing = []
        if args.deployment:
            shares, held, missing, rows = await agree_on_envelopes(spec, shares, held)
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
            if args.deployment:
                readings = readings[:, rows]
            settled, retailer, meter_excluded = await SettlementNode(node, readings, reading_layout, price2).run(node.valid)
            save_array(os.path.join(own, 'settlement.npy'), settled)
            save_array(os.path.join(own, 'retailer.npy'), retailer)
            public['meter_excluded'] = meter_excluded
            node.timings['settlement'] = _time.perf_counter() - settle_started
        if args.peers:
            from .peers import own_results, return_results
            save_array(os.path.join(own, 'own_results.npy'), own_results(spec, await return_results(spec, results)))
        sent = sum(peer.protocol.nbytes_sent for peer in mpc.parties if peer.pid != mpc.pid)
        if args.deployment:
            public['participants'] = spec.participants
            public['missing'] = missing
        _SHUTTING_DOWN[0] = True
        await mpc.shutdown()
        save_array(os.path.join(own, 'results.npy'), results)
        public['timings'] = {k: round(v, 4) for k, v in node.timings.items()}
        public['mpc_tls'] = bool(mpc.options.ssl)
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
