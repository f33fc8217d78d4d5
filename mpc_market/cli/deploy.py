"""Deployment commands over gRPC: ``node``, ``broker``, ``up``, ``submit``, ``results``, ``meter``
(``round`` is in rounds.py)."""

import os
import sys
import time

from ..common.errors import COMMAND_LINE, InputError, KeyFileError, Unreachable
from .market import MAX_WARNINGS, default_config


# -- deployment -------------------------------------------------------------------------------------
def configure_logging():
    from ..common.logs import configure
    configure()



def cmd_node(args):
    from ..net.config import load_node_config
    from ..net.node import serve
    from .daemon import start_daemon
    config = start_daemon(args, load_node_config(args.config))
    return serve(config)



def cmd_broker(args):
    import dataclasses

    from ..net.broker import serve
    from ..net.config import ADDRESS_RE, load_broker_config
    config = load_broker_config(args.config)
    if args.http is not None:
        if not ADDRESS_RE.match(args.http):
            raise InputError('<command line>', 0, 'http', f'expected "host:port", got {args.http[:80]!r}')
        config = dataclasses.replace(config, http=args.http)
    from .daemon import start_daemon
    return serve(start_daemon(args, config))



def cmd_up(args):
    import signal

    from ..net.config import ADDRESS_RE
    from ..net.localdeploy import LocalDeployment
    from ..net.server import check_free
    from .daemon import log_argv
    if args.http is not None and not ADDRESS_RE.match(args.http):
        raise InputError(COMMAND_LINE, 0, 'http', f'expected "host:port", got {args.http[:80]!r}')
    if args.http is not None and not 0 < int(args.http.rsplit(':', 1)[1]) < 65536:  # 0: up could not say where
        raise InputError(COMMAND_LINE, 0, 'http', f'the port must be 1..65535, got {args.http[:80]!r}')
    deployment = LocalDeployment(args.dir, args.nodes, netns=args.netns, daemon_args=log_argv(args))
    slots, market = '0-3', args.config or 'MARKET.toml'
    if args.orders:  # the next-step hint names the orders' own slots and market
        from ..market.config import load_config
        from ..market.orders import load_orders
        config = load_config(args.config) if args.config else default_config()
        orders = load_orders(args.orders, config)
        slots = _format_slots(sorted({o.slot for o in orders}))
    if args.http:  # a taken page port, before any key is written
        check_free('operator page', args.http)
    if os.path.exists(deployment.broker_config):
        deployment.load()
        print(f'using the existing deployment in {args.dir}')
    else:
        participants = sorted({o.participant for o in orders}) if args.orders else []
        if args.base_port:  # a taken port (another deployment's broker) before any key is written
            check_free('broker', f'127.0.0.1:{args.base_port}')
        try:
            deployment.create(participants, delay_ms=args.delay_ms, base_port=args.base_port, metrics=args.metrics)
        except KeyFileError as exc:
            raise InputError(args.dir, 0, 'keys', str(exc)) from None
        print(f'wrote fresh keys ({len(participants)} participants registered) and configs to {args.dir}')
    check_free('broker', deployment.broker_address)
    try:
        deployment.start(http=args.http)
    except Unreachable as exc:  # a daemon exited (a taken port, a bad config): stop the others
        deployment.stop()
        raise OSError(str(exc)) from None
    print(f'broker at {deployment.broker_address}; {args.nodes} nodes running (logs in {args.dir}/*.log)')
    if args.http:
        print(f'operator page: http://{args.http}/')
    if deployment.metrics:
        print('metrics: ' + ', '.join(f'{name} http://{address}/metrics'
                                      for name, address in deployment.metrics.items()))
    round_id = _next_round_id(deployment)
    print('next, in another terminal:')
    print(f'  operator:     mpc-market round open --broker {deployment.broker_address} --keys {deployment.keys} '
          f'--round {round_id} --slots {slots} --market {market} --gate-closure-in 120')
    print(f'  participants: mpc-market submit --broker {deployment.broker_address} --keys {deployment.keys} '
          f'--orders {args.orders or "ORDERS.csv"}')
    print(f'  operator:     mpc-market round close --broker {deployment.broker_address} --keys {deployment.keys} '
          f'--round {round_id} --wait 120')
    print('Ctrl-C stops everything.', flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop and all(p.poll() is None for p in deployment.procs.values()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    dead = [n for n, p in deployment.procs.items() if p.poll() is not None]
    reasons = {n: deployment.exit_reason(n) for n in dead}  # before stop() forgets the processes
    deployment.stop()
    for name in dead:  # which daemon, and why: its exit status or signal and its last log line
        print(f'error: {name} stopped ({reasons[name]}); the others were stopped too; see '
              f'{os.path.join(args.dir, name + ".log")}', file=sys.stderr)
    return 1 if dead else 0



def _next_round_id(deployment):
    """'rN' after the highest rN the broker has (a reused directory has rounds already): the
    next-step hint must name a round that does not exist yet. 'ROUND' if the broker cannot say."""
    import re

    from ..net.client import BrokerClient, ClientError
    try:
        broker = BrokerClient(deployment.broker_address, deployment.keys, 'operator')
        try:
            ids = [r.round_id for r in broker.rounds()]
        finally:
            broker.close()
    except (ClientError, KeyFileError, OSError):
        return 'ROUND'
    numbers = [int(m.group(1)) for i in ids if (m := re.fullmatch(r'r(\d{1,9})', i))]
    return f'r{max(numbers, default=0) + 1}'



def _format_slots(slots):
    """'46-49' for a run of consecutive slots, else '0,5,9'."""
    if slots and slots == list(range(slots[0], slots[-1] + 1)):
        return f'{slots[0]}-{slots[-1]}' if len(slots) > 1 else str(slots[0])
    return ','.join(map(str, slots))


def cmd_submit(args):
    from ..net.client import BrokerClient, submit_orders
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        report = submit_orders(args.orders, broker, args.keys, args.round, args.client, args.workers, args.batch)
    finally:
        broker.close()
    rate = len(report.accepted) / report.seconds if report.seconds else 0.0
    print(f'round {report.round_id}: {len(report.accepted)} participants\' orders accepted by every node '
          f'in {report.seconds:.2f} s ({rate:.0f}/s)')
    for reason in list(report.failed.values())[:MAX_WARNINGS]:
        print(f'error: {reason}', file=sys.stderr)
    if report.failed:
        print(f'error: {len(report.failed)} participants not accepted (nothing half-counted; resubmit them)',
              file=sys.stderr)
        return 1
    return 0



def _feeder_positions(body):
    """The per-zone positions of a signed public body (a market with feeder_min_cohort), or None."""
    from ..common.errors import Malformed
    from ..market.feeders import FeederPosition
    from ..net.client import ClientError
    if 'feeder_positions' not in body:
        return None
    rows = body['feeder_positions']
    try:
        return [FeederPosition.from_json(r) for r in (rows if isinstance(rows, list) else [None])]
    except Malformed as exc:
        raise ClientError(f'public results: {exc}') from None


def _bill_text(args, broker, participants):
    """(summary, CSV text, failure lines) of the participants' bills over the settled rounds from
    --from to --to (or of --round), as their rows of bills.csv of `mpc-market settle`."""
    from ..market.output import BILL_COLUMNS, csv_text
    from ..net.bills import period_bills
    first, last = args.from_day or args.to_day, args.to_day or args.from_day
    if not first and not args.round:
        raise InputError(COMMAND_LINE, 0, 'from', '--bill needs --from DAY (and --to DAY), or --round')
    if not args.orders:  # the shares alone would bill a retailer-settled order as 0 (issue 22, problem 1)
        raise InputError(COMMAND_LINE, 0, 'orders', "--bill needs the participants' orders file (--orders FILE): "
                         "orders settled with the retailer and the planned positions are not in the nodes' shares")
    result = period_bills(broker, args.keys, participants, first, last, args.orders, client=args.client,
                          round_id='' if first else args.round)
    if not result.settled:
        raise InputError(COMMAND_LINE, 0, 'from', f'no settled round delivers from {first} to {last}'
                         if first else f'round {args.round} is not settled')
    money = result.settled[0].config.format_amount
    bills = [b for p, b in result.bills.items() if not (args.all and p in result.absent)]  # --all: who took part
    rows = [{'participant': bill.participant, 'trade_amount': money(bill.trade_amount),
             'deviation_amount': money(bill.deviation_amount), 'total_amount': money(bill.total_amount),
             'retailer_only_amount': money(bill.retailer_only_amount), 'saving': money(bill.saving)} for bill in bills]
    columns = list(BILL_COLUMNS)
    if result.flex_rounds:  # a round delivered flexibility: the columns of `mpc-market flex settle`'s bills.csv
        columns[columns.index('total_amount'):columns.index('total_amount')] = ['flex_revenue', 'flex_penalty']
        for row, bill in zip(rows, bills, strict=True):
            revenue, penalty = result.flex[bill.participant]
            row.update(flex_revenue=money(revenue), flex_penalty=money(penalty))
    text = csv_text(columns, rows)
    single = len(participants) == 1 and not args.all
    summary = ((f'{participants[0]}: bill' if single else f'{len(bills)} participants: bills')
               + f' over {len(result.settled)} settled rounds'
               + (f' from {first} to {last}' if first else '')
               + f' ({", ".join(r.round_id for r in result.settled)})')
    if result.flex_rounds:
        summary += '; flexibility delivered: ' + ', '.join(f'{f} in {r}' for r, f in result.flex_rounds.items())
    if result.pending:
        summary += f'; not settled yet, left out: {", ".join(r.round_id for r in result.pending)}'
    return summary, text if bills else None, [f'{p}: {reason}' for p, reason in result.failed.items()]



def _retailer_text(args, broker):
    """(summary, CSV text) of the retailer's view of one settled round, as retailer.csv."""
    from ..market.output import RETAILER_COLUMNS, csv_text
    from ..net.client import client_manifest, fetch_own_results
    from ..net.trusted import trusted_round
    state = trusted_round(broker.status(args.round), client_manifest(args.keys), args.round)
    _, _, values = fetch_own_results(broker, args.keys, (args.participant or ['retailer'])[0], client=args.client,
                                     kind='retailer', state=state)
    money = state.config.format_amount
    text = csv_text(RETAILER_COLUMNS, [{
        'slot': slot, 'slot_start': state.config.slot_start_text(slot), 'receives': money(v[0]),
        'pays': money(v[1]), 'rounding_residue': money(v[2] - v[0] + v[1]),
        'net': money(v[2])} for slot, v in zip(state.slots, values, strict=True)])
    return f"round {state.round_id}: the retailer's view (reconstructed from all nodes' shares)", text



def cmd_meter(args):
    """Each destination on its own: the aggregator gets the meter-days whatever the rounds; the
    market nodes only while a round of the day takes readings. Exit 1 only if a destination asked
    for got nothing or refused a meter (the market nodes are asked unless --aggregator-only)."""
    from ..net.client import BrokerClient
    from ..net.messages import state_phase
    from ..net.meter import load_upload, submit_to_nodes
    from ..stats.meterdata import load_feeders
    from ..stats.paillier import load_public_keys
    from ..stats.upload import day_values, upload_days
    day = args.day
    to_nodes = not args.aggregator_only
    public_keys, feeders = (), None
    if args.aggregator_only and not args.aggregator:
        raise InputError(COMMAND_LINE, 0, 'aggregator-only', '--aggregator-only needs --aggregator HOST:PORT')
    if to_nodes and not args.orders:
        raise InputError(COMMAND_LINE, 0, 'orders', "the market nodes need the participants' orders (--orders FILE; "
                         'or --aggregator-only)')
    if args.aggregator:
        if not args.pubkey or not args.feeders:
            raise InputError(COMMAND_LINE, 0, 'aggregator', '--aggregator needs --pubkey and --feeders')
        public_keys = load_public_keys(args.pubkey)
        for path, key in zip(args.pubkey, public_keys, strict=True):
            if args.key_id and key.key_id not in args.key_id:
                raise InputError(path, 1, 'key_id', f'{key.key_id} is not a pinned key id (--key-id)')
        feeders = load_feeders(args.feeders)
    started = time.perf_counter()
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        upload = load_upload(args.readings, args.orders if to_nodes else None, day, broker, args.keys,
                             args.participant)
    finally:
        broker.close()
    if args.aggregator:
        day_values(upload.readings, upload.day_rounds, public_keys[0].layout, args.readings)  # the day's shape, first
    failures, nothing = [], []  # per meter; destinations asked for that got nothing
    nodes_failed = submit_to_nodes(upload, args.keys, args.client, args.workers, args.batch) \
        if to_nodes and upload.rounds else {}
    grid = upload_days(upload, args.aggregator, public_keys, feeders, args.keys, args.client, args.readings) \
        if args.aggregator else None
    taking = ', '.join(r.round_id for r in upload.rounds) or 'none'
    print(f'{day}: {len(upload.participants)} meters, rounds taking readings: {taking}, '
          f'{time.perf_counter() - started:.2f} s')
    if not to_nodes:
        print('  market nodes: not asked (--aggregator-only)')
    elif not upload.rounds:
        print(f'  market nodes: nothing sent: {upload.why_no_round}')
        nothing.append(f'market nodes got nothing: {upload.why_no_round}; run the same command again in the '
                       "round's readings window")
    else:
        print(f'  market nodes: {len(upload.participants) - len(nodes_failed)} accepted by every node, '
              f'{len(nodes_failed)} not')
        if upload.skipped:
            print('  not sent (the round takes no readings now; once settled, they are late): ' + ', '.join(
                f'{r.round_id} ({state_phase(r.state)})' for r in upload.skipped))
        failures += [f'market nodes: {r}' for r in nodes_failed.values()]
    if grid is not None:
        print(f'  aggregator {args.aggregator}: {len(grid.accepted)} accepted, {len(grid.held)} already held, '
              f'{len(grid.failed)} not')
        failures += [f'aggregator: {p}: {r}' for p, r in grid.failed.items()]
    for reason in failures[:MAX_WARNINGS]:
        print(f'error: {reason}', file=sys.stderr)
    if failures:
        print(f'error: {len(failures)} deliveries failed; run the same command again to retry them', file=sys.stderr)
    for line in nothing:
        print(f'error: {line}', file=sys.stderr)
    return 1 if failures or nothing else 0



def _chosen_participants(args):
    """The participants asked for: --participant (repeatable, in the order given) or --all (every
    participant whose key is in KEYS/participants). A named participant without a key is bad input."""
    from ..common.keys import load_participant_key
    if args.all and args.participant:
        raise InputError(COMMAND_LINE, 0, 'all', 'give --all or --participant, not both')
    if not args.all:
        participants = list(dict.fromkeys(args.participant or ()))
        for participant in participants:  # before anything is fetched: exit 2, nothing written
            load_participant_key(args.keys, participant)
        return participants
    folder = os.path.join(args.keys, 'participants')
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise InputError(folder, 0, 'file', f'cannot list the participant keys ({exc.strerror})') from None
    participants = sorted(n[:-len('.key')] for n in names if n.endswith('.key') and not n.endswith('.kex.key'))
    if not participants:
        raise InputError(folder, 0, 'file', 'no participant key (--all fetches those whose key is here)')
    return participants


def _rows_text(args, broker, participants):
    """(summary, participants.csv text of `mpc-market clear` or None, failure lines) of several participants."""
    from ..market.book import Book
    from ..market.orders import load_orders
    from ..market.output import csv_text, participant_columns, participant_table
    from ..market.results import ClearingResult, order_rows
    from ..net.client import ClientError, client_manifest, fetch_own_results
    from ..net.trusted import trusted_round
    if not args.orders:
        raise InputError(COMMAND_LINE, 0, 'orders', "several participants' rows are participants.csv of "
                         "`mpc-market clear`, which needs their orders file (--orders FILE)")
    state = trusted_round(broker.status(args.round), client_manifest(args.keys), args.round)
    config = state.config
    orders = load_orders(args.orders, config)
    with_orders = {o.participant for o in orders}
    values_of, excluded, failures = {}, set(), []
    for participant in participants:
        try:
            _, status, values = fetch_own_results(broker, args.keys, participant, client=args.client, state=state)
        except ClientError as exc:
            if exc.code == 'NOT_FOUND' and participant not in with_orders:
                continue  # no order and no part in the round: no rows, as in `clear`
            failures.append(f'{participant}: {exc}')
            continue
        if status == 'missing':
            failures.append(f'{participant}: no order counted (not every node held the same submission)')
            continue
        values_of[participant] = {s: tuple(int(v) for v in row) for s, row in zip(state.slots, values, strict=True)}
        if status != 'cleared':
            excluded.add(participant)
    # one book of the fetched participants' orders, in the file's order: the rows of `clear`
    own = [o for o in orders if o.participant in values_of and o.slot in set(state.slots)]
    book = Book(config, own, extra_pairs=[(p, s) for p in values_of for s in state.slots])
    rows = order_rows(book, excluded, lambda o: values_of[o.participant][o.slot])
    text = csv_text(participant_columns(config), participant_table(config, ClearingResult([], rows)))
    summary = (f'round {state.round_id}: {len(values_of)} participants\' rows reconstructed from all nodes\' shares'
               + (f' ({len(excluded)} excluded)' if excluded else ''))
    return summary, text if values_of else None, failures


def _own_text(args, broker, participant):
    """(summary, CSV text or None, failure lines) of one participant's own results."""
    from ..market.output import csv_text, participant_columns, participant_table
    from ..market.results import ClearingResult
    from ..net.client import fetch_own_results, own_order_rows
    state, status, values = fetch_own_results(broker, args.keys, participant, args.round, args.client)
    if status == 'missing':
        return None, None, [f'round {state.round_id}: {participant}: no order counted (not every node held the same '
                            'submission)']
    if args.orders:
        config, rows = own_order_rows(state, status, values, args.orders, participant)
        text = csv_text(participant_columns(config), participant_table(config, ClearingResult([], rows)))
    else:
        config = state.config
        zoned = ('local_wh', 'cross_wh') if config.zoned else ()
        text = csv_text(('participant', 'slot', 'slot_start', 'matched_wh', 'unmatched_wh', 'amount', 'status',
                         *zoned), [
            {'participant': participant, 'slot': s, 'slot_start': config.slot_start_text(s), 'matched_wh': v[0],
             'unmatched_wh': v[1],
             'amount': config.format_amount(v[2]), 'status': status, **dict(zip(zoned, v[3:], strict=True)),
             } for s, v in zip(state.slots, values, strict=True)])
    note = '' if args.orders else ('; per slot as the market cleared it: an order the retailer settles (a limit that '
                                   'cannot trade) shows as unmatched with amount 0 — give --orders for the rows of '
                                   '`clear` and --bill for money')
    return f'round {state.round_id}: {participant}: {status} (reconstructed from all nodes\' shares){note}', text, []


def _flex_public_text(broker, keys, round_id):
    """(summary, requests.csv of `flex clear`) of a flexibility round's signed public results."""
    from ..market.flex import FlexResult
    from ..net.client import fetch_flex_public
    from .flex import result_files
    state, market, outcomes, body = fetch_flex_public(broker, keys, round_id)
    text = result_files(market, FlexResult(outcomes, []))['requests.csv']
    return (f'round {state.round_id} (flexibility): public results signed by all {state.manifest.m} nodes of the '
            f'deployment manifest; {body["participants"]} participants cleared, {body["excluded"]} excluded, '
            f'{body["missing"]} missing'), text


def _flex_own_text(broker, args, participant):
    """(summary, the participant's rows of activations.csv of `flex clear`) in a flexibility round.

    Raises:
        InputError: no --offers (the participant's offers file), or a malformed one.
    """
    from ..net.client import fetch_own_activations
    from .flex import result_files
    if not args.offers:
        raise InputError(COMMAND_LINE, 0, 'offers', 'a flexibility round\'s results need --offers (your offers file)')
    status, market, result = fetch_own_activations(broker, args.keys, participant, args.offers, args.round,
                                                   args.client)
    return (f'{participant}: {status} (reconstructed from all nodes\' shares)',
            result_files(market, result)['activations.csv'])


def _flex_round(broker, args):
    """Whether the round asked for is a flexibility round (the broker says; the fetch then checks the
    signed parameters, which bind the requests)."""
    return bool(broker.status(args.round).flex_requests) and not (args.bill or args.retailer)


def cmd_results(args):
    from ..market.output import csv_text, feeder_files, public_columns, write_all
    from ..net.client import BrokerClient, fetch_public
    from ..rpc import market_pb2
    failures, extra = [], {}  # files written beside the main one (--out)
    if args.retailer:
        if args.all or len(args.participant or ()) > 1:
            raise InputError(COMMAND_LINE, 0, 'retailer', "the retailer's view is fetched with one key (--participant)")
        participants = []
    elif args.public:
        participants = []
    else:
        participants = _chosen_participants(args)
        if not participants:
            raise InputError(COMMAND_LINE, 0, 'participant', 'give --participant ID (repeatable), --all or --public')
    several = args.all or len(participants) > 1
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        if args.retailer:
            summary, text = _retailer_text(args, broker)
            name = 'retailer.csv'
        elif args.bill:
            summary, text, failures = _bill_text(args, broker, participants)
            name = 'bills.csv'
        elif _flex_round(broker, args):  # a flexibility round: requests.csv / activations.csv of `flex clear`
            if args.public:
                summary, text = _flex_public_text(broker, args.keys, args.round)
                name = 'requests.csv'
            elif several:
                raise InputError(COMMAND_LINE, 0, 'participant', 'a flexibility round: one --participant at a time')
            else:
                summary, text = _flex_own_text(broker, args, participants[0])
                name = f'{participants[0]}.activations.csv'
        elif args.public:
            state, body = fetch_public(broker, args.keys, args.round)
            config = state.config
            text = csv_text(public_columns(config), body['slots'])
            positions = _feeder_positions(body)
            extra = {} if positions is None else feeder_files(config, positions)
            summary = (f'round {state.round_id}: public results signed by all {state.manifest.m} nodes of the '
                       'deployment manifest; '
                       f'{body["participants"]} participants cleared, {body["excluded"]} excluded, '
                       f'{body["missing"]} missing')
            if state.state.settlement == market_pb2.RoundState.SETTLED:
                _, settled = fetch_public(broker, args.keys, state.round_id, settlement=True)
                summary += (f'; settlement signed by all nodes: {settled["settled"]} participants settled, '
                            f'{settled["metered"]} metered, {settled["missing_readings"]} without a reading and '
                            f'{settled["invalid_readings"]} with an invalid one (settled as: '
                            f'{settled["missing_reading_rule"]})')
            if extra:
                summary += (f'; per-zone planned net positions of {len({f.feeder for f in positions})} zones '
                            f'(at least {config.feeder_min_cohort} participants each)')
            name = 'public.csv'
        elif several:
            summary, text, failures = _rows_text(args, broker, participants)
            name = 'participants.csv'
        else:
            summary, text, failures = _own_text(args, broker, participants[0])
            name = f'{participants[0]}.csv'
    finally:
        broker.close()
    if text is not None:
        if failures and several:  # never replace a complete file with one that lacks participants
            name = name.replace('.csv', '.partial.csv')
        if args.out:
            files = {name: text, **extra}
            write_all(args.out, files)
            print(f'{summary}; wrote {", ".join(os.path.join(args.out, n) for n in files)}')
        else:
            print(summary, file=sys.stderr)
            sys.stdout.write(text)
    for line in failures:  # one line per participant whose results could not be fetched; the others are written
        print(f'error: {line}', file=sys.stderr)
    if failures and several:
        print(f'error: {len(failures)} participants not fetched'
              + ('' if text is None else f'; the others were written to {name}'), file=sys.stderr)
    return 1 if failures else 0



def add_parsers(sub, formatter):
    from .daemon import add_daemon_options, add_log_options
    from .options import MAX_BATCH, MAX_WORKERS, bounded_float, bounded_int, client_args, day_text, participant_id
    p = sub.add_parser('node', help='run one market node (gRPC server + MPyC party)', formatter_class=formatter,
                       description='Serve submissions, round control (from the broker only) and results over '
                                   'mutual TLS, and run the MPyC party of each clearing. Configuration: NODE.toml '
                                   '(see docs/deployment.md and parties/node0.toml).',
                       epilog='example:\n  mpc-market node --config parties/node0.toml')
    p.add_argument('--config', required=True, help='NODE.toml')
    add_daemon_options(p, 'metrics')
    p.set_defaults(func=cmd_node)

    p = sub.add_parser('broker', help='run the broker (rounds, gate closure, public results)',
                       formatter_class=formatter,
                       description='Open and close rounds at every node, close each round at its gate closure, '
                                   're-run failed clearings and publish the public results every node signed. '
                                   'The broker never sees an order, a share or a reading.',
                       epilog='example:\n  mpc-market broker --config parties/broker.toml')
    p.add_argument('--config', required=True, help='BROKER.toml')
    p.add_argument('--http', metavar='HOST:PORT',
                   help='also serve a read-only operator page (rounds, phases, public prices and volumes as charts, '
                        'node health; public information only) on this address, e.g. 127.0.0.1:7380; '
                        'default: BROKER.toml\'s http, else none')
    add_daemon_options(p, 'metrics')
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser('up', help='fresh keys + broker + nodes as processes on this machine',
                       formatter_class=formatter,
                       description='Create a deployment directory (keys, configs) unless it exists, start the '
                                   'broker and the nodes, print the next commands, and run until Ctrl-C.',
                       epilog='example:\n'
                              '  mpc-market generate --participants 500 --slots 4 --out community\n'
                              '  mpc-market up --dir deploy --orders community/orders.csv '
                              '--config community/market.toml')
    p.add_argument('--dir', required=True, help='deployment directory (reused if it exists)')
    p.add_argument('--nodes', type=bounded_int(3, 7), default=3, metavar='M', help='market nodes, 3..7')
    p.add_argument('--orders', help='register every participant of this orders file')
    p.add_argument('--config', help='market TOML for reading --orders')
    p.add_argument('--netns', action='store_true', help='each node in its own network namespace '
                   '(run parties/netns.sh up first; root)')
    p.add_argument('--base-port', type=bounded_int(0, 65535 - 64), default=7300, help='broker port; nodes use the '
                   'next ports (up to 63 more; when the deployment is created; 0 = any free ports)')
    p.add_argument('--delay-ms', type=bounded_float(0, 10_000, ' ms'), default=0, help='added one-way latency between '
                   'nodes in ms, 0..10000 (TCP proxy; when the deployment is created)')
    p.add_argument('--metrics', action='store_true', help='the broker and each node serve Prometheus metrics on '
                   '127.0.0.1, on the ports after the others (when the deployment is created)')
    p.add_argument('--http', metavar='HOST:PORT',
                   help="the broker's read-only operator page on this address, e.g. 127.0.0.1:7380 (public "
                        'information only; keep it on 127.0.0.1); default: none')
    add_log_options(p)
    p.set_defaults(func=cmd_up)

    p = sub.add_parser('submit', help='share, sign and submit orders to every node', formatter_class=formatter,
                       description='For each participant of the orders file: Shamir-share its order vectors, '
                                   'sign one envelope with its key, send node i only its share package, and check '
                                   'every node\'s signed receipt. A participant counts only if every node accepted.',
                       epilog='example:\n  mpc-market submit --broker 127.0.0.1:7300 --keys deploy/keys '
                              '--orders community/orders.csv')
    client_args(p, 'submitter', 'optional')
    p.add_argument('--orders', required=True, help='orders CSV or JSON (one or many participants)')
    p.add_argument('--workers', type=bounded_int(1, MAX_WORKERS), default=4,
                   help=f'concurrent batches in flight, 1..{MAX_WORKERS}')
    p.add_argument('--batch', type=bounded_int(1, MAX_BATCH), default=64, help='participants per request to each '
                   f'node, 1..{MAX_BATCH} (1 = one order per request)')
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser('results', help="participants' own results and bills, or the public results",
                       formatter_class=formatter,
                       description='--participant: fetch its result shares from every node (sealed to its key), '
                                   'reconstruct and print its rows. Repeat --participant, or give --all (every '
                                   'participant whose key is in KEYS/participants), to fetch several at once: they '
                                   'are written as participants.csv of `mpc-market clear` (with --bill: bills.csv '
                                   'of `mpc-market settle`); a participant that cannot be fetched is one error '
                                   'line, the others are still written, and the exit status is 1. --public: the '
                                   'public results, checked against every node\'s signature.',
                       epilog='examples:\n'
                              '  mpc-market results --broker 127.0.0.1:7300 --keys deploy/keys --public\n'
                              '  mpc-market results --broker 127.0.0.1:7300 --keys deploy/keys --participant h001 '
                              '--orders community/orders.csv\n'
                              '  mpc-market results --broker 127.0.0.1:7300 --keys deploy/keys --all '
                              '--orders community/orders.csv --round r1 --out r1/')
    client_args(p, 'submitter', 'optional')
    p.add_argument('--participant', action='append', metavar='ID', type=participant_id,
                   help='participant id (its key signs the request); repeat for several')
    p.add_argument('--all', action='store_true',
                   help='every participant whose key is in KEYS/participants (those that took no part are left out)')
    p.add_argument('--orders', help="the participants' orders file: print rows like participants.csv (needed with "
                                    '--bill, several --participant and --all)')
    p.add_argument('--offers', help="a flexibility round: the participant's offers file (its activations.csv rows)")
    p.add_argument('--public', action='store_true', help='the public results, checked against every node signature')
    p.add_argument('--bill', action='store_true',
                   help="the participants' bills summed over the settled rounds delivering --from DAY --to DAY "
                        '(or of --round alone; needs --orders), as their rows of bills.csv of `mpc-market settle`')
    p.add_argument('--from', dest='from_day', type=day_text, metavar='DAY',
                   help='first delivery day YYYY-MM-DD (--bill)')
    p.add_argument('--to', dest='to_day', type=day_text, metavar='DAY', help='last delivery day YYYY-MM-DD (--bill)')
    p.add_argument('--retailer', action='store_true',
                   help="the retailer's view of a settled round (its key and TLS certificate: --client retailer)")
    p.add_argument('--out', help='directory to write the CSV to (default: stdout)')
    p.set_defaults(func=cmd_results)

    p = sub.add_parser('meter', help='meter readings: one upload to the market nodes and the grid statistics',
                       formatter_class=formatter,
                       description='submit: for each meter of the readings file and the delivery day, send the '
                                   'secret-shared reading packages to every market node (settlement of the day\'s '
                                   'rounds) and, with --aggregator, the Paillier-encrypted meter-day to the '
                                   'statistics aggregator (DSO/TSO), each signed with the participant\'s key. Each '
                                   'destination on its own: the aggregator gets the day whatever the rounds, the '
                                   'market nodes only while a round of the day takes readings; each is reported on '
                                   'its own, and the exit status is 1 only if a destination asked for got nothing '
                                   'or refused a meter. A retry is idempotent.',
                       epilog='example:\n  mpc-market meter submit --broker 127.0.0.1:7300 --keys deploy/keys '
                              '--readings community/readings.csv --orders community/orders.csv --day 2026-12-01 '
                              '--aggregator 127.0.0.1:7400 --pubkey ops/dso.pub.json --feeders community/feeders.csv')
    p.add_argument('action', choices=('submit',), help='what to do')
    client_args(p, 'submitter', 'optional')
    p.add_argument('--readings', required=True, help='meter readings CSV: participant,slot,net_wh')
    p.add_argument('--orders',
                   help="the participants' orders, required for the market nodes (the reading packages prove "
                        "deviations from them; without its orders a participant's readings would fail the nodes' "
                        'checks)')
    p.add_argument('--day', required=True, type=day_text,
                   help='delivery day YYYY-MM-DD: the rounds of that day take the readings')
    p.add_argument('--participant', action='append', type=participant_id,
                   help='only this participant; repeat (default: all in the file)')
    p.add_argument('--aggregator', help='statistics aggregator host:port (default: market nodes only)')
    p.add_argument('--aggregator-only', action='store_true',
                   help='send to the statistics aggregator only, not to the market nodes')
    p.add_argument('--pubkey', action='append', help='grid operator public key (with --aggregator); repeat')
    p.add_argument('--key-id', action='append', help='pin: encrypt only under public keys with these ids')
    p.add_argument('--feeders', help='CSV participant,feeder,zone (with --aggregator)')
    p.add_argument('--workers', type=bounded_int(1, MAX_WORKERS), default=4,
                   help=f'concurrent batches in flight, 1..{MAX_WORKERS}')
    p.add_argument('--batch', type=bounded_int(1, MAX_BATCH), default=MAX_BATCH,
                   help=f'participants per request to each node, 1..{MAX_BATCH}')
    p.set_defaults(func=cmd_meter)
