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
from dataclasses import replace

from cryptography.exceptions import InvalidSignature

STATISTICAL_SECURITY = 40
AGREEMENT_DOMAIN = b'mpc-market/held-envelopes/v1\n'
READINGS_AGREEMENT_DOMAIN = b'mpc-market/held-readings/v1\n'


def _die_with_parent():
    """Linux: get SIGKILL when the node daemon dies, so no orphan keeps the MPyC port.

    Set here rather than in a preexec_fn: forking the multi-threaded gRPC daemon is unsafe."""
    import ctypes
    import signal
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if str(os.getppid()) != os.environ.get('MPC_MARKET_PARENT_PID', str(os.getppid())):
        raise SystemExit('error: the node daemon exited before the MPC party started')


def held_statement(round_id, node_index, held, domain=AGREEMENT_DOMAIN):
    """The canonical bytes a node signs to tell the others which envelopes it holds."""
    from ..common.signing import canonical_bytes
    return canonical_bytes(domain, {'round_id': round_id, 'node_index': node_index,
                                              'held': sorted([p, h] for p, h in held.items())})


def parse_held_statement(message, sender, round_id, verify_key, domain=AGREEMENT_DOMAIN):
    """{participant: envelope hash} from a peer's signed statement; raise ValueError unless it is
    node sender's signature over exactly the schema of held_statement for this round."""
    from ..common.names import is_name
    from ..common.signing import SHA256_HEX
    if not (isinstance(message, tuple) and len(message) == 2 and all(isinstance(x, bytes) for x in message)):
        raise ValueError(f'node {sender}: malformed envelope statement')
    body, signature = message
    try:
        verify_key.verify(signature, body)
    except InvalidSignature:
        raise ValueError(f'node {sender}: envelope statement with a bad signature') from None
    if not body.startswith(domain):
        raise ValueError(f'node {sender}: not an envelope statement')
    try:
        fields = json.loads(body[len(domain):])
    except (ValueError, RecursionError):
        raise ValueError(f'node {sender}: malformed envelope statement') from None
    if not isinstance(fields, dict) or fields.get('round_id') != round_id or fields.get('node_index') != sender:
        raise ValueError(f'node {sender}: envelope statement for another round or node')
    rows = fields.get('held')
    if not isinstance(rows, list) or not all(
            isinstance(r, list) and len(r) == 2 and is_name(r[0]) and isinstance(r[1], str)
            and SHA256_HEX.fullmatch(r[1]) for r in rows):
        raise ValueError(f'node {sender}: malformed envelope statement')
    held = dict(map(tuple, rows))
    if len(held) != len(rows) or body != held_statement(round_id, sender, held, domain):
        raise ValueError(f'node {sender}: envelope statement is not canonical')
    return held


async def agree_on_envelopes(spec, shares, held, keys_dir, index, domain=AGREEMENT_DOMAIN):
    """Keep the participants whose identical signed envelope every node holds.

    Each node signs the list of {participant: envelope SHA-256} it holds with its Ed25519 key;
    every statement received is checked against its sender's key and the schema. Returns (kept
    shares, kept participants, missing participants, kept rows).
    """
    import numpy as np
    from mpyc.runtime import mpc

    from ..common.keys import load_node_signing_key, load_node_verify_keys
    verify_keys = load_node_verify_keys(keys_dir, spec.nodes)
    body = held_statement(spec.round_id, index, held, domain)
    messages = await mpc.transfer((body, load_node_signing_key(keys_dir, index).sign(body)))
    views = [held if sender == index else parse_held_statement(message, sender, spec.round_id,
                                                                 verify_keys[sender], domain)
             for sender, message in enumerate(messages)]
    common = set(views[0].items()).intersection(*(set(v.items()) for v in views[1:]))
    everyone = set().union(*views)
    kept = sorted(p for p, _ in common)
    row_of = {p: i for i, p in enumerate(sorted(held))}
    rows = np.array([row_of[p] for p in kept], dtype=np.int64)
    return np.ascontiguousarray(shares[:, rows]), kept, sorted(everyone - set(kept)), rows


async def settlement_packages(args, spec, own, clearing):
    """(orders, readings, the spec with the settled participants, missing readings) of a
    settle-only session.

    The order shares are the clearing's (rows = clearing['participants'], or the job's own in a
    local run); in a deployment the nodes first agree on the reading envelopes all of them hold.
    A participant with agreed readings but no part in the clearing has zero order shares (planned
    0); one in the clearing without agreed readings gets zero reading shares (the missing-reading
    rule applies)."""
    import numpy as np
    orders = np.load(own.shares, mmap_mode='r')
    readings = np.load(own.readings, mmap_mode='r')
    if not args.deployment:
        return orders, readings, spec, []
    held = own.read_held()
    readings, readers, _, _ = await agree_on_envelopes(spec, readings, held, args.keys, args.index,
                                                      READINGS_AGREEMENT_DOMAIN)
    in_clearing = list(clearing.participants)
    participants = sorted(set(in_clearing) | set(readers))
    order_row, reading_row = {p: i for i, p in enumerate(in_clearing)}, {p: i for i, p in enumerate(readers)}
    all_orders = np.zeros((orders.shape[0], len(participants), *orders.shape[2:]), dtype=np.uint32)
    all_readings = np.zeros((readings.shape[0], len(participants), *readings.shape[2:]), dtype=np.uint32)
    for j, p in enumerate(participants):
        if p in order_row:
            all_orders[:, j] = orders[:, order_row[p]]
        if p in reading_row:
            all_readings[:, j] = readings[:, reading_row[p]]
    return all_orders, all_readings, replace(spec, participants=participants), sorted(set(in_clearing) - set(readers))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog='mpc_market.mpc.node')
    parser.add_argument('--job', required=True)
    parser.add_argument('--index', type=int, required=True)
    parser.add_argument('--parties', required=True, help='comma-separated host:port of all nodes')
    parser.add_argument('--threshold', type=int)
    parser.add_argument('--peers', action='store_true',
                        help='scenario S1: this node is also participant committee[INDEX] and shares its own orders')
    parser.add_argument('--deployment', action='store_true',
                        help='packages of a deployment round: agree on identical envelopes first')
    parser.add_argument('--settle-only', action='store_true',
                        help='a second session: settle the readings against the order shares kept from clearing, '
                             'with the clearing\'s public verdicts and deviation prices (clearing.json)')
    parser.add_argument('--keys', required=True,
                        help='ca/ca.pem and nodes/node{i}.* of this node: every MPyC link is mutual TLS')
    return parser.parse_args(argv)


def mpyc_argv(args):
    """The MPyC runtime's own command line (it configures itself from sys.argv at import)."""
    # statistical security 2^-40 for every masked opening and MPyC comparison (default 2^-30)
    argv = [sys.argv[0], '-I', str(args.index), '--no-log', '-K', str(STATISTICAL_SECURITY)]
    for address in args.parties.split(','):
        argv += ['-P', address]
    if args.threshold is not None:
        argv += ['-T', str(args.threshold)]
    if len(args.parties.split(',')) > PRSS_UP_TO:
        argv.append('--no-prss')
    return argv


# PRSS makes random shares without communication, but each costs C(m, t) PRF calls per party: 35
# at m = 7, 126 at 9, 462 at 11. Measured on 2 cores (2,000 orders): 28.9 s with PRSS against
# 21.2 s without at m = 7 (5: 10.9 against 10.0 s; 200 orders at 11: 119 s against 17.7 s), for
# 2.5-3x the bytes and ~50 more sequential messages per link. So PRSS up to 5 nodes only.
PRSS_UP_TO = 5


async def load_packages(args, spec, own):
    """(shares, held participants, missing participants, kept rows) in this node's mode: local
    packages as written, the peers' own orders exchanged (S1), or a deployment's stored packages
    cut down to the envelopes every node holds."""
    import numpy as np
    if args.peers:
        from .peers import exchange_packages
        shares, held = await exchange_packages(spec, np.load(own.shares),
                                               np.load(own.own_orders))
        return shares, held, [], None
    shares = np.load(own.shares, mmap_mode='r')
    held = own.read_held()
    if args.deployment:
        return await agree_on_envelopes(spec, shares, held, args.keys, args.index)
    return shares, held, [], None


async def settle(node, own, readings, valid, price2):
    """The settlement phase: deviations of the meter readings (rows as the node's participants) of
    the participants valid at clearing, at the clearing's deviation prices price2 (2 x per slot).
    Returns the participants whose meter packages failed the checks."""
    from ..market.book import ReadingLayout
    from .jobs import save_array
    from .settlement import SettlementNode
    spec = node.spec
    started = time.perf_counter()
    layout = ReadingLayout((spec.max_reading_wh + spec.max_order_wh).bit_length(),
                           spec.max_reading_wh.bit_length(), spec.max_reading_wh)
    settled, retailer, meter_excluded = await SettlementNode(node, readings, layout, price2).run(valid)
    save_array(own.settlement, settled)
    save_array(own.retailer, retailer)
    node.timings['settlement'] = time.perf_counter() - started
    return meter_excluded


async def settle_only(args, spec, own, progress):
    """The settlement as its own MPC session: the order shares are the ones the clearing used, the
    verdicts and deviation prices the clearing's public outputs; only the seed is new.
    Returns (node, public outputs)."""
    import numpy as np

    from .clearing import MarketNode
    from .jobs import JobDir
    clearing = JobDir(args.job).read_verdicts()
    cleared, price2 = set(clearing.cleared), [int(v) for v in clearing.deviation_price2]
    if len(price2) != len(spec.slots):
        raise ValueError(f'clearing.json: {len(price2)} deviation prices for {len(spec.slots)} slots')
    orders, readings, spec, no_reading = await settlement_packages(args, spec, own, clearing)
    participants = spec.participants
    in_clearing = set(participants if clearing.participants is None else clearing.participants)
    node = MarketNode(spec, orders, participants, progress)
    await node.agree_seed()
    # in the market: cleared at clearing, or readings only (no order: planned 0)
    valid = np.array([p in cleared or p not in in_clearing for p in participants], dtype=bool)
    unread = set(no_reading)  # zero packages fail the checks too: report them as missing, not invalid
    invalid = [p for p in await settle(node, own, readings, valid, price2) if p not in unread]
    return node, {'slots': [], 'excluded': [], 'missing': [], 'meter_excluded': invalid,
                  'participants': participants, 'missing_readings': no_reading,
                  'order_excluded': sorted(in_clearing - cleared)}  # PublicOutputs' fields but the figures


def say(line):
    """A status line for the supervising process (it reads the party's log)."""
    print(line, flush=True)


async def run_party(mpc, args, spec, own, start_links, report=say):
    """One party's whole run on its job files: start the links (start_links(), awaited), wait for
    the packages, clear (and settle) or settle only, then write the result shares and public.json.

    mpc: the MPyC runtime of this process; args: parse_args's namespace; spec and own: the job's
    JobSpec and this party's NodeFiles; report: where the status lines go ('connected', progress)."""
    import numpy as np

    from . import mpyc_internals as internals
    from .clearing import MarketNode
    from .jobs import PublicOutputs, RunFigures, save_array
    from .primitives import peak_rss_mb

    started = time.perf_counter()
    await start_links()
    report('connected')  # the daemon's watchdog: start-up is over
    while not own.is_ready():  # packages still being written
        await asyncio.sleep(0.02)

    def progress(phase, done, total):  # node 0 reports; the local engine relays it
        if mpc.pid == 0:
            report(f'progress {phase} {done} {total}')

    if args.settle_only:
        node, public = await settle_only(args, spec, own, progress)
        results = None
    else:
        shares, held, missing, rows = await load_packages(args, spec, own)
        # a deployment's job lists no participants: those whose envelope every node holds
        run_spec = replace(spec, participants=list(held)) if args.deployment else spec
        node = MarketNode(run_spec, shares, held, progress)
        outcome = await node.run()
        results = outcome.clearing.results
        public = {'slots': outcome.clearing.slots, 'excluded': outcome.excluded,
                  'missing': missing if args.deployment else outcome.missing,
                  'participants': list(run_spec.participants)}
        if spec.settle:
            readings = np.load(own.readings, mmap_mode='r')
            public['meter_excluded'] = await settle(node, own, readings if rows is None else readings[:, rows],
                                                    outcome.valid, outcome.clearing.deviation_price2)
    if args.peers:
        from .peers import own_results, return_results
        save_array(own.own_results, own_results(spec, await return_results(spec, results)))
    links = [peer.protocol for peer in mpc.parties if peer.pid != mpc.pid]
    sent = sum(link.nbytes_sent for link in links)
    messages = max((getattr(link, 'messages_sent', 0) for link in links), default=0)
    internals.shutting_down()
    await mpc.shutdown()
    if results is not None:
        save_array(own.results, results)
    timings = {k: round(v, 4) for k, v in node.timings.items()}
    timings['node_total'] = round(time.perf_counter() - started, 4)
    figures = RunFigures(timings=timings, mpc_tls=bool(mpc.options.ssl), bytes_sent=sent,
                         messages_per_link=messages, peak_rss_mb=round(peak_rss_mb(), 1),
                         peak_rss_mb_by_phase=node.peaks)
    own.write_public(PublicOutputs(figures=figures, **public))


def main(argv=None):
    args = parse_args(argv)
    if args.deployment:
        _die_with_parent()
    sys.argv = mpyc_argv(args)  # before mpyc.runtime is imported

    from mpyc.runtime import mpc

    from . import mpyc_internals as internals
    from .jobs import DETERMINISTIC_EXIT, JobDir

    job = JobDir(args.job)
    spec = job.load_spec()
    own = job.node(args.index)

    def run():
        return run_party(mpc, args, spec, own, lambda: internals.start(mpc, args.keys))

    profile_dir = os.environ.get('MPC_MARKET_PROFILE')  # developer aid: cProfile each node
    if profile_dir:
        import cProfile
        cProfile.runctx('mpc.run(run())', globals(), locals(), os.path.join(profile_dir, f'node{args.index}.prof'))
    else:
        try:
            mpc.run(run())
        except (OSError, EOFError) as exc:  # a lost link (a peer died, the network): the broker reruns
            print(f'error: link lost: {type(exc).__name__}: {exc}', flush=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 - a refused job or a bug: the same inputs fail the same way
            import traceback
            traceback.print_exc()
            print(f'error: {type(exc).__name__}: {str(exc)[:200]}', flush=True)
            sys.exit(DETERMINISTIC_EXIT)


if __name__ == '__main__':
    main()
