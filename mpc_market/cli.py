"""Command line: ``mpc-market clear | settle | generate | demo | keys`` (local),
``node | broker | up | round | submit | results`` (deployment over gRPC) and ``stats ...``
(grid-operator statistics, see mpc_market/stats/cli.py)."""

import argparse
import dataclasses
import os
import sys
import tempfile
import time

from .errors import InputError

MAX_WARNINGS = 10


def _progress_printer(quiet):
    last = [0.0]

    def progress(stage, done, total):
        now = time.monotonic()
        if quiet or (now - last[0] < 1.0 and done < total):
            return
        last[0] = now
        if stage == 'sharing':
            print(f'  sharing orders client-side: {done}/{total} participants', file=sys.stderr)
        elif stage == 'nodes':
            print(f'  market nodes clearing under MPC ({total} processes)...', file=sys.stderr)
        else:
            print(f'  nodes: {stage} {done}/{total} participants', file=sys.stderr)
    return progress


def _warn_untradeable(book, orders_path, quiet):
    untradeable = book.untradeable()
    if quiet:
        return
    for o in untradeable[:MAX_WARNINGS]:
        bound = 'above the ceiling' if o.side == 'sell' else 'below the floor'
        print(f'warning: {orders_path}:{o.line}: limit_price: {o.participant} {o.side} limit {o.limit_price} is '
              f'{bound}; order settled with the retailer', file=sys.stderr)
    if len(untradeable) > MAX_WARNINGS:
        print(f'warning: {len(untradeable) - MAX_WARNINGS} more orders cannot trade locally', file=sys.stderr)


def _clear(orders_path, config_path, nodes, engine, mode, chunk, quiet):
    from . import engine as engines
    from .encoding import Book
    from .market import load_config, load_orders

    config = load_config(config_path)
    orders = load_orders(orders_path, config)
    book = Book(config, orders)
    if mode == 'peers' and not 3 <= len(book.participants) <= engines.MAX_NODES:
        raise InputError(orders_path, 1, 'participant', f'peers mode runs one node per participant and needs '
                         f'3..{engines.MAX_NODES} participants, got {len(book.participants)}')
    _warn_untradeable(book, orders_path, quiet)
    if engine == 'plain':
        return config, book, engines.clear_plain(book)
    if mode == 'peers':
        return config, book, engines.clear_peers(book, progress=_progress_printer(quiet))
    return config, book, engines.clear_mpc(book, nodes=nodes, chunk=chunk, progress=_progress_printer(quiet))


def _summary(config, book, result):
    traded = sum(s.traded_wh for s in result.slots)
    trading = sum(1 for s in result.slots if s.traded_wh)
    stats = result.stats
    lines = [f'{len(book.orders)} orders of {len(book.participants)} participants in {len(book.slots)} slots; '
             f'{trading} slots traded {traded} Wh locally']
    if result.excluded:
        lines.append(f'{len(result.excluded)} participants excluded (invalid or missing packages): '
                     + ', '.join(result.excluded[:5]) + (' ...' if len(result.excluded) > 5 else ''))
    if stats.get('engine') == 'mpc':
        lines.append(f'MPC with {stats["nodes"]} nodes: {stats["total_s"]:.2f} s end to end '
                     f'(sharing {stats["sharing_s"]:.2f} s, nodes {stats["nodes_s"]:.2f} s), '
                     f'{stats["bytes_sent_per_participant"] / 1024:.1f} KiB sent per participant per node, '
                     f'peak {stats["peak_rss_mb"]:.0f} MB per node')
    else:
        lines.append(f'plaintext reference: {stats["total_s"]:.2f} s')
    return '\n'.join(lines)


def cmd_clear(args):
    from .output import write_results
    config, book, result = _clear(args.orders, args.config, args.nodes, args.engine, args.mode, args.chunk,
                                  args.quiet)
    write_results(args.out, config, result)
    print(_summary(config, book, result))
    print(f'wrote {os.path.join(args.out, "public.csv")} and {os.path.join(args.out, "participants.csv")}')
    return 0


def cmd_settle(args):
    from . import billing
    from .encoding import Book
    from .market import load_config, load_orders
    from .output import write_settlement
    from .readings import load_readings
    config = load_config(args.config)
    if args.mechanism:
        config = dataclasses.replace(config, mechanism=args.mechanism)
    orders = load_orders(args.orders, config)
    readings = load_readings(args.readings, config)
    book = Book(config, orders, extra_pairs=list(readings))
    net_of = billing.check_readings(book, readings, args.orders)
    _warn_untradeable(book, args.orders, args.quiet)
    if args.engine == 'plain':
        result = billing.settle_plain(book, net_of)
    else:
        result = billing.settle_mpc(book, net_of, nodes=args.nodes, chunk=args.chunk,
                                    progress=_progress_printer(args.quiet))
    write_settlement(args.out, config, result)
    print(_summary(config, book, result.clearing))
    deviation = sum(r.deviation_amount for r in result.rows)
    saving = sum(b.saving for b in result.bills)
    print(f'settled {len(result.rows)} participant-slots: deviations net {config.format_amount(deviation)} '
          f'to the retailer; community saving {config.format_amount(saving)} against retailer-only bills')
    print(f'wrote public.csv, participants.csv, bills.csv and retailer.csv to {args.out}')
    return 0


def cmd_keys(args):
    from . import keys
    try:
        if args.action in ('ca', 'all'):
            keys.create_ca(args.dir)
            print(f'wrote CA to {os.path.join(args.dir, "ca")}')
        if args.action == 'broker':
            keys.create_broker(args.dir, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote the broker TLS certificate to {os.path.join(args.dir, "broker")}')
        if args.action == 'aggregator':
            keys.create_aggregator(args.dir, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote the statistics aggregator TLS certificate to {os.path.join(args.dir, "aggregator")}')
        if args.action == 'client':
            keys.create_client(args.dir, args.name)
            print(f'wrote client certificate {args.name} to {os.path.join(args.dir, "clients")}')
        if args.action == 'node':
            keys.create_node(args.dir, args.index, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote node{args.index} TLS certificate and signing key to {os.path.join(args.dir, "nodes")}')
        if args.action == 'all':
            for i in range(args.nodes):
                keys.create_node(args.dir, i, args.host or ['127.0.0.1', 'localhost'])
            print(f'wrote {args.nodes} node certificates and signing keys to {os.path.join(args.dir, "nodes")}')
            keys.create_broker(args.dir, args.host or ['127.0.0.1', 'localhost'])
            for client in ('submitter', 'operator'):
                keys.create_client(args.dir, client)
            print(f'wrote the broker certificate and submitter and operator client certificates to {args.dir}')
        if args.action in ('participants', 'all'):
            names = list(args.participant or [])
            if args.orders:
                from .market import load_config, load_orders
                config = load_config(args.config) if args.config else None
                names += sorted({o.participant for o in load_orders(args.orders, config or _default_config())})
            if names:
                keys.create_participants(args.dir, names)
                print(f'registered {len(names)} participants in {os.path.join(args.dir, "registry.json")}')
    except keys.KeyError_ as exc:
        raise InputError(args.dir, 0, 'keys', str(exc)) from None
    return 0


def _default_config():
    from decimal import Decimal
    from .market import MarketConfig
    return MarketConfig(Decimal('0'), Decimal('1000'), Decimal('0.001'), (1 << 24) - 1)


def cmd_generate(args):
    from .generate import write_community
    if args.participants < 1 or args.slots < 1:
        raise InputError('<command line>', 0, 'participants' if args.participants < 1 else 'slots', 'must be >= 1')
    orders, config, count, readings = write_community(args.out, args.participants, args.slots, args.seed)
    print(f'wrote {count} orders of {args.participants} households x {args.slots} slots to {orders}, '
          f'meter readings to {readings}, market to {config}, feeder map to '
          f'{os.path.join(args.out, "feeders.csv")}')
    return 0


def cmd_demo(args):
    from .engine import clear_plain
    from .generate import write_community
    from .output import public_table, write_results
    work = tempfile.mkdtemp(prefix='mpc-market-demo-')
    orders, config_path, count, _ = write_community(work, args.participants, args.slots, args.seed)
    print(f'Community: {args.participants} households, {args.slots} slots of 15 minutes, {count} orders '
          f'(generated in {work})')
    started = time.perf_counter()
    config, book, result = _clear(orders, config_path, args.nodes, 'mpc', 'local', 8192, True)
    elapsed = time.perf_counter() - started
    write_results(os.path.join(work, 'out'), config, result)
    print(f'Cleared under MPC by {args.nodes} market node processes in {elapsed:.1f} s. Public results '
          '(the only thing the nodes learn):')
    print(f'  {"slot":>4} {"time":>5} {"price/kWh":>9} {"traded Wh":>10} {"residual":>8}')
    for row in public_table(config, result):
        if row['traded_wh']:
            slot = int(row['slot'])
            print(f'  {slot:>4} {slot % 96 // 4:02d}:{slot % 4 * 15:02d} {row["price"]:>9} '
                  f'{row["traded_wh"]:>10} {row["residual_wh"]:>8}')
    quiet_slots = sum(1 for s in result.slots if not s.traded_wh)
    print(f'  ({quiet_slots} slots without local trade)')
    shown = sorted({r.participant for r in result.rows if r.matched_wh})[:3]
    for name in shown:
        rows = [r for r in result.rows if r.participant == name]
        matched = sum(r.matched_wh for r in rows)
        total = sum(r.amount for r in rows)
        print(f'Private result of {name} (only {name} can reconstruct it): {len(rows)} orders, '
              f'{matched} Wh matched locally, net amount {config.format_amount(total)}')
        for r in [r for r in rows if r.matched_wh][:2]:
            print(f'    slot {r.slot}: {r.side} {r.energy_wh} Wh, matched {r.matched_wh} Wh, '
                  f'amount {config.format_amount(r.amount)}')
    plain = clear_plain(book)
    same = plain.slots == result.slots and plain.rows == result.rows
    print('Plaintext reference agrees exactly.' if same else 'MISMATCH with the plaintext reference!')
    print(_summary(config, book, result))
    return 0 if same else 1


# -- deployment -------------------------------------------------------------------------------------
def _logging():
    import logging
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(name)s %(levelname)s %(message)s')


def cmd_node(args):
    from .deployment import load_node_config
    from .nodeserver import serve
    config = load_node_config(args.config)
    _logging()
    return serve(config)


def cmd_broker(args):
    from .broker import serve
    from .deployment import load_broker_config
    config = load_broker_config(args.config)
    _logging()
    return serve(config)


def cmd_up(args):
    import signal
    from .localdeploy import LocalDeployment
    deployment = LocalDeployment(args.dir, args.nodes, netns=args.netns)
    if os.path.exists(deployment.broker_config):
        deployment.load()
        print(f'using the existing deployment in {args.dir}')
    else:
        participants = []
        if args.orders:
            from .market import load_config, load_orders
            config = load_config(args.config) if args.config else _default_config()
            participants = sorted({o.participant for o in load_orders(args.orders, config)})
        try:
            deployment.create(participants, delay_ms=args.delay_ms, base_port=args.base_port)
        except Exception as exc:
            from .keys import KeyError_
            if isinstance(exc, KeyError_):
                raise InputError(args.dir, 0, 'keys', str(exc)) from None
            raise
        print(f'wrote fresh keys ({len(participants)} participants registered) and configs to {args.dir}')
    deployment.start()
    print(f'broker at {deployment.broker_address}; {args.nodes} nodes running (logs in {args.dir}/*.log)')
    print(f'  operator:     mpc-market round open --broker {deployment.broker_address} --keys {deployment.keys} '
          '--round r1 --slots 0-3 --market MARKET.toml --gate-closure-in 60')
    print(f'  participants: mpc-market submit --broker {deployment.broker_address} --keys {deployment.keys} '
          '--orders ORDERS.csv')
    print('Ctrl-C stops everything.', flush=True)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop and all(p.poll() is None for p in deployment.procs.values()):
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    dead = [n for n, p in deployment.procs.items() if p.poll() is not None]
    deployment.stop()
    if dead:
        print(f'error: {", ".join(dead)} stopped; see {args.dir}/{dead[0]}.log', file=sys.stderr)
        return 1
    return 0


def _parse_slots(text):
    slots = []
    for part in text.split(','):
        try:
            if '-' in part:
                lo, hi = (int(x) for x in part.split('-', 1))
                slots.extend(range(lo, hi + 1))
            else:
                slots.append(int(part))
        except ValueError:
            raise InputError('<command line>', 0, 'slots', f'{text!r} is not like 0-95 or 0,1,2') from None
    if not slots or min(slots) < 0 or len(set(slots)) != len(slots):
        raise InputError('<command line>', 0, 'slots', f'{text!r}: need distinct slots >= 0')
    return sorted(slots)


def _state_line(state):
    from .rpc import market_pb2
    name = market_pb2.RoundState.State.Name(state.state).lower()
    closes = time.strftime('%H:%M:%S', time.localtime(state.gate_closure_unix_ms / 1000))
    line = (f'round {state.round_id}: {name}; {len(state.slots)} slots; gate closure {closes}; '
            f'{state.accepted} participants accepted by every node; clearing attempts {state.attempts}')
    return line + (f'; reason: {state.reason}' if state.reason else '')


def _round_id(value):
    from .names import is_name, NAME_RULE
    if value and not is_name(value):
        raise argparse.ArgumentTypeError(f'round id {value[:80]!r} is not {NAME_RULE}')
    return value


def cmd_round(args):
    from .client import BrokerClient
    from .market import load_config, read_text
    from .rpc import market_pb2
    from .store import now_ms
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        if args.action == 'open':
            if not args.slots or not args.market:
                raise InputError('<command line>', 0, 'slots' if not args.slots else 'market',
                                 'round open needs --slots and --market')
            load_config(args.market)  # report a bad market file here, with its line
            state = broker.open(args.round, _parse_slots(args.slots), now_ms() + int(args.gate_closure_in * 1000),
                                read_text(args.market, 'utf-8'))
        elif args.action == 'close':
            state = broker.close_round(args.round)
        else:
            state = broker.status(args.round)
        if args.wait is not None:
            state = broker.wait(state.round_id, args.wait)
        print(_state_line(state))
        return 0 if args.wait is None or state.state == market_pb2.RoundState.CLEARED else 1
    finally:
        broker.close()


def cmd_submit(args):
    from .client import BrokerClient, submit_orders
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        report = submit_orders(args.orders, broker, args.keys, args.round, args.client, args.workers, args.batch)
    finally:
        broker.close()
    rate = len(report.accepted) / report.seconds if report.seconds else 0.0
    print(f'round {report.round_id}: {len(report.accepted)} participants\' orders accepted by every node '
          f'in {report.seconds:.2f} s ({rate:.0f}/s)')
    for participant, reason in list(report.failed.items())[:MAX_WARNINGS]:
        print(f'error: {reason}', file=sys.stderr)
    if report.failed:
        print(f'error: {len(report.failed)} participants not accepted (nothing half-counted; resubmit them)',
              file=sys.stderr)
        return 1
    return 0


def cmd_results(args):
    from .client import BrokerClient, fetch_own_results, fetch_public, own_order_rows
    from .output import PARTICIPANT_COLUMNS, _csv_text, participant_table, public_columns, _write_all
    from .engine import ClearingResult
    from .market import parse_config
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        if args.public:
            state, body = fetch_public(broker, args.keys, args.round)
            config = parse_config(f'round {state.round_id}', state.market_toml)
            text = _csv_text(public_columns(config), body['slots'])
            summary = (f'round {state.round_id}: public results signed by all {len(state.node_addresses)} nodes; '
                       f'{body["participants"]} participants cleared, {body["excluded"]} excluded, '
                       f'{body["missing"]} missing')
            name = 'public.csv'
        else:
            if not args.participant:
                raise InputError('<command line>', 0, 'participant', 'give --participant ID or --public')
            state, status, values = fetch_own_results(broker, args.keys, args.participant, args.round, args.client)
            if status == 'missing':
                print(f'round {state.round_id}: {args.participant}: no order counted (not every node held the same '
                      'submission)')
                return 1
            if args.orders:
                config, rows = own_order_rows(state, status, values, args.orders, args.participant)
                text = _csv_text(PARTICIPANT_COLUMNS, participant_table(config, ClearingResult([], rows)))
            else:
                config = parse_config(f'round {state.round_id}', state.market_toml)
                text = _csv_text(('participant', 'slot', 'matched_wh', 'unmatched_wh', 'amount', 'status'), [
                    {'participant': args.participant, 'slot': s, 'matched_wh': v[0], 'unmatched_wh': v[1],
                     'amount': config.format_amount(v[2]), 'status': status} for s, v in zip(state.slots, values)])
            summary = f'round {state.round_id}: {args.participant}: {status} (reconstructed from all nodes\' shares)'
            name = f'{args.participant}.csv'
    finally:
        broker.close()
    if args.out:
        _write_all(args.out, {name: text})
        print(f'{summary}; wrote {os.path.join(args.out, name)}')
    else:
        print(summary, file=sys.stderr)
        sys.stdout.write(text)
    return 0


def _deployment_parsers(sub):
    p = sub.add_parser('node', help='run one market node (gRPC server + MPyC party)')
    p.add_argument('--config', required=True, help='NODE.toml')
    p.set_defaults(func=cmd_node)

    p = sub.add_parser('broker', help='run the broker (rounds, gate closure, public results)')
    p.add_argument('--config', required=True, help='BROKER.toml')
    p.set_defaults(func=cmd_broker)

    p = sub.add_parser('up', help='fresh keys + broker + nodes as processes on this machine')
    p.add_argument('--dir', required=True, help='deployment directory (reused if it exists)')
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M')
    p.add_argument('--orders', help='register every participant of this orders file')
    p.add_argument('--config', help='market TOML for reading --orders')
    p.add_argument('--netns', action='store_true', help='each node in its own network namespace '
                   '(run parties/netns.sh up first; root)')
    p.add_argument('--base-port', type=int, default=7300, help='broker port; nodes use the next ports '
                   '(when the deployment is created; 0 = any free ports)')
    p.add_argument('--delay-ms', type=float, default=0, help='added one-way latency between nodes (TCP proxy; '
                   'when the deployment is created)')
    p.set_defaults(func=cmd_up)

    def client_args(p, client):
        p.add_argument('--broker', required=True, help='broker host:port')
        p.add_argument('--keys', required=True, help='key directory (CA, client certificate, node public keys, '
                       'participant keys)')
        p.add_argument('--client', default=client, help=f'client certificate name in KEYS/clients (default {client})')
        p.add_argument('--round', default='', type=_round_id, help='round id (default: the latest open round)')

    p = sub.add_parser('round', help='open, close or show a round at the broker')
    p.add_argument('action', choices=('open', 'close', 'status'))
    client_args(p, 'operator')
    p.add_argument('--slots', help='slots traded in the round: 0-95 or 0,1,2')
    p.add_argument('--market', help='market TOML of the round')
    p.add_argument('--gate-closure-in', type=float, default=60.0, metavar='SECONDS')
    p.add_argument('--wait', type=float, metavar='SECONDS', help='wait until the round is cleared')
    p.set_defaults(func=cmd_round)

    p = sub.add_parser('submit', help='share, sign and submit orders to every node')
    client_args(p, 'submitter')
    p.add_argument('--orders', required=True, help='orders CSV or JSON (one or many participants)')
    p.add_argument('--workers', type=int, default=4, help='concurrent batches in flight')
    p.add_argument('--batch', type=int, default=64, help='participants per request to each node (1 = one order '
                   'per request)')
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser('results', help="a participant's own results, or the public results")
    client_args(p, 'submitter')
    p.add_argument('--participant', help='participant id (its key signs the request)')
    p.add_argument('--orders', help="the participant's orders file: print rows like participants.csv")
    p.add_argument('--public', action='store_true', help='the public results, checked against every node signature')
    p.add_argument('--out', help='directory to write the CSV to (default: stdout)')
    p.set_defaults(func=cmd_results)


def build_parser():
    parser = argparse.ArgumentParser(prog='mpc-market', description='Privacy-preserving local electricity market')
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('clear', help='clear an orders file (under MPC by default)')
    p.add_argument('--orders', required=True, help='orders CSV or JSON')
    p.add_argument('--config', required=True, help='market TOML')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M', help='market nodes (3..7)')
    p.add_argument('--engine', choices=('mpc', 'plain'), default='mpc')
    p.add_argument('--mode', choices=('local', 'peers'), default='local',
                   help='peers: every participant runs its own node (scenario S1, at most 7)')
    p.add_argument('--chunk', type=int, default=8192, help='orders per streamed chunk (bounds node memory)')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser('settle', help='clear and settle deviations from meter readings; write bills')
    p.add_argument('--orders', required=True, help='orders CSV or JSON')
    p.add_argument('--readings', required=True, help='meter readings CSV: participant,slot,net_wh')
    p.add_argument('--config', required=True, help='market TOML')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M', help='market nodes (3..7)')
    p.add_argument('--engine', choices=('mpc', 'plain'), default='mpc')
    p.add_argument('--mechanism', choices=('double-auction', 'sdr', 'mmr', 'bill-sharing'),
                   help='pricing mechanism (default: the market TOML\'s, else double-auction)')
    p.add_argument('--chunk', type=int, default=8192, help='orders per streamed chunk (bounds node memory)')
    p.add_argument('--quiet', action='store_true')
    p.set_defaults(func=cmd_settle)

    p = sub.add_parser('keys', help='create a CA, node TLS certificates and signing keys, participant keys')
    p.add_argument('action', choices=('ca', 'node', 'broker', 'aggregator', 'client', 'participants', 'all'))
    p.add_argument('--name', default='submitter', help='client certificate name (action client): submitter, '
                   'operator, a representative')
    p.add_argument('--dir', required=True, help='key directory (private keys are never overwritten)')
    p.add_argument('--index', type=int, default=0, help='node index (action node)')
    p.add_argument('--nodes', type=int, default=3, help='number of nodes (action all)')
    p.add_argument('--host', action='append', help='host name or IP of the node(s); repeat (default 127.0.0.1, localhost)')
    p.add_argument('--participant', action='append', help='participant id to register; repeat')
    p.add_argument('--orders', help='register every participant of this orders file')
    p.add_argument('--config', help='market TOML for reading --orders')
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser('generate', help='write a realistic community: orders, meter readings, market config')
    p.add_argument('--participants', type=int, required=True)
    p.add_argument('--slots', type=int, default=96)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--out', required=True)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser('demo', help='generate a community and clear it under MPC')
    p.add_argument('--participants', type=int, default=200)
    p.add_argument('--slots', type=int, default=96)
    p.add_argument('--nodes', type=int, default=3, choices=range(3, 8), metavar='M')
    p.add_argument('--seed', type=int, default=2026)
    p.set_defaults(func=cmd_demo)
    _deployment_parsers(sub)
    from .stats.cli import add_parsers
    add_parsers(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f'error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('error: interrupted', file=sys.stderr)
        return 130
    except Exception as exc:  # engine failures: one line, no traceback
        from .client import ClientError
        from .engine import EngineError
        from .keys import KeyError_
        if isinstance(exc, (EngineError, OSError, ClientError, KeyError_)):
            print(f'error: {exc}', file=sys.stderr)
            return 1
        raise


if __name__ == '__main__':
    sys.exit(main())
