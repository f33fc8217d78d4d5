"""``mpc-market round open | close | status | list | settled``: an operator's control of the
broker's rounds. Each action is its own subcommand with only its own options."""

import argparse
import time

from ..common.errors import COMMAND_LINE, InputError


def _shown(text: str) -> str:
    """A broker-supplied text (a failure reason) without terminal control characters."""
    return ''.join(c if c.isprintable() else '?' for c in text)


def _clock(unix_ms: int, utc: bool = False) -> str:
    return time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(unix_ms / 1000)) if utc else \
        time.strftime('%H:%M:%S', time.localtime(unix_ms / 1000))


def state_line(state) -> str:
    """One line of a round's state, as `round status` prints it.

    Args:
        state: a market_pb2.RoundState.

    Returns:
        The line (no newline).
    """
    from ..net.messages import state_phase
    line = (f'round {state.round_id}: {state_phase(state)}; {len(state.slots)} slots; gate closure '
            f'{_clock(state.gate_closure_unix_ms)}; {state.accepted} participants accepted by every node; '
            f'clearing attempts {state.attempts}')
    if state.flex_requests:  # an energy round's line is unchanged (scripts read it)
        line += f'; flexibility round ({_requests(state)} requests)'
        if state.energy_round:
            line += f', delivered in the settlement of {state.energy_round}'
    if state.readings_deadline_unix_ms:
        line += (f'; readings until {_clock(state.readings_deadline_unix_ms)} ({state.readings} held by every node); '
                 f'settlement attempts {state.settle_attempts}')
    return line + (f'; reason: {_shown(state.reason)}' if state.reason else '') + (
        f'; settlement: {_shown(state.settle_reason)}' if state.settle_reason else '')


def _requests(state) -> int:
    """How many requests a flexibility round's CSV lists (display only: its rows after the header)."""
    return max(0, len([line for line in state.flex_requests.splitlines() if line.strip()]) - 1)


LIST_HEADER = (f'{"round":<20} {"day":<10} {"phase":<13} {"slots":<12} {"mechanism":<15} {"gate closure (UTC)":<20} '
               f'{"readings until (UTC)":<20} attempts note')


def list_line(state) -> str:
    """One row of `round list` (columns of LIST_HEADER).

    Args:
        state: a market_pb2.RoundState.

    Returns:
        The row (no newline).
    """
    from ..market.config import market_summary
    from ..net.messages import state_phase
    mechanism, zones = market_summary(state.round_id, state.market_toml)
    mechanism += f'+{zones}z' if zones else ''
    if state.flex_requests:  # a flexibility round: its mechanism column says so
        mechanism = f'flex ({_requests(state)} req)'
    slots = f'{min(state.slots)}-{max(state.slots)} ({len(state.slots)})' if state.slots else ''
    deadline = _clock(state.readings_deadline_unix_ms, utc=True) if state.readings_deadline_unix_ms else '-'
    return (f'{state.round_id:<20} {state.day or "-":<10} {state_phase(state):<13} {slots:<12} '
            f'{mechanism:<15} '
            f'{_clock(state.gate_closure_unix_ms, utc=True):<20} {deadline:<20} '
            f'{state.attempts}/{state.settle_attempts:<5} {_shown(state.reason or state.settle_reason)}').rstrip()


def round_slots(config, slots: list[int] | None, day: str | None) -> list[int]:
    """The slots of a round: --slots, or with --day and a market start the day's (MarketConfig.day_slots:
    a local calendar day in the market's timezone, 92 or 100 quarter hours on a DST change).

    Args:
        config: the round's MarketConfig.
        slots: --slots as given, or None.
        day: --day as given, or None.

    Returns:
        The sorted slots.

    Raises:
        InputError: no slots given and none follow from the day, or --slots outside the day's slots.
    """
    from ..common.days import parse_day
    from ..common.errors import BadParameter
    if not day or config.start is None:
        if slots is None:
            raise InputError(COMMAND_LINE, 0, 'slots', '--slots is needed (or --day with a market file that gives '
                             'a start)')
        return slots
    try:
        delivered = config.day_slots(parse_day(day))
    except (BadParameter, OverflowError) as exc:
        raise InputError(COMMAND_LINE, 0, 'day', str(exc)) from None
    if slots is None:
        return list(delivered)
    outside = [s for s in slots if s not in delivered]
    if outside:
        raise InputError(COMMAND_LINE, 0, 'slots', f'slot {outside[0]} is not delivered on {day}: in the market\'s '
                         f'time ({config.timezone}) that day is slots {delivered.start}-{delivered.stop - 1} '
                         f'({len(delivered)} slots of {config.slot_minutes} minutes)')
    return slots


def _open(broker, args):
    from ..common.textinput import read_text
    from ..market.config import load_config, with_mechanism
    from ..net.store import now_ms
    config = load_config(args.market)  # a bad market file is reported here, with its line
    slots = round_slots(config, args.slots, args.day) if not args.flex or args.slots else []
    market_text = read_text(args.market, 'utf-8')
    if args.mechanism:  # the round's own market text says it: nodes, results and clients follow
        market_text = with_mechanism(args.market, market_text, args.mechanism)
    gate_ms = now_ms() + int(args.gate_closure_in * 1000)
    deadline_ms = gate_ms + int(args.readings_deadline_in * 1000) if args.readings_deadline_in else 0
    opens_ms = gate_ms + int(args.readings_open_in * 1000) if deadline_ms and args.readings_open_in else 0
    flex_requests = ''
    if args.flex:  # a flexibility round: the public requests, checked here with their lines; its slots theirs
        from ..market.flex import load_requests
        requests = load_requests(args.flex, config)
        flex_requests = read_text(args.flex, 'utf-8')
        if args.slots is None:
            slots = sorted({r.slot for r in requests})
    if args.energy_round and not args.flex:
        raise InputError(COMMAND_LINE, 0, 'energy-round', '--energy-round names the energy round of a flexibility '
                         'round: give --flex REQUESTS.csv too')
    return broker.open(args.round, slots, gate_ms, market_text, opens_ms, deadline_ms, args.day or '', flex_requests,
                       args.energy_round or '')


def cmd_round(args: argparse.Namespace) -> int:
    """Run one `round` action against the broker.

    Args:
        args: the parsed command line (args.action names the subcommand).

    Returns:
        0 on success; 1 when --wait ran out (or the round failed for good) before the round was
        cleared (settled).

    Raises:
        InputError: a bad market file, or `settled` on a round that is not settled by readings.
        MarketError, OSError: the broker or a node refused or could not be reached.
    """
    from ..net.client import BrokerClient
    from ..rpc import market_pb2
    broker = BrokerClient(args.broker, args.keys, args.client)
    try:
        if args.action == 'list':
            rows = [list_line(state) for state in broker.rounds()]  # fetched first: no header before an error
            print(LIST_HEADER)
            for row in rows:
                print(row)
            return 0
        if args.action == 'open':
            state = _open(broker, args)
        elif args.action == 'close':
            state = broker.close_round(args.round)
        else:
            state = broker.status(args.round)
        settled = args.action == 'settled'
        if settled and not state.readings_deadline_unix_ms:
            raise InputError(COMMAND_LINE, 0, 'round', f'round {args.round} takes no meter readings (it was '
                             'opened without --readings-deadline-in): it is never settled; `round status` shows '
                             'its clearing')
        wait = getattr(args, 'wait', None)
        if wait is not None:
            state = broker.wait(state.round_id, wait, settled=settled)
        print(state_line(state))
        if wait is None:
            return 0
        done = state.settlement == market_pb2.RoundState.SETTLED if settled else \
            state.state == market_pb2.RoundState.CLEARED
        return 0 if done else 1
    finally:
        broker.close()


def add_parsers(sub: argparse._SubParsersAction, formatter: type[argparse.HelpFormatter]) -> None:
    """Add `round` and its subcommands.

    Args:
        sub: the top-level subparsers.
        formatter: the help formatter class.
    """
    from ..common.limits import ROUND_SLOTS
    from ..market.config import MECHANISMS
    from .options import bounded_seconds, client_args, day_text, slot_list
    p = sub.add_parser('round', help='open, close, list or show the rounds at the broker', formatter_class=formatter,
                       description='An operator\'s control of the rounds (its certificate must be listed in the '
                                   'broker\'s operators).',
                       epilog='examples:\n'
                              '  mpc-market round open --broker 127.0.0.1:7300 --keys deploy/keys --round r1 '
                              '--slots 46-49 --market community/market.toml --gate-closure-in 120\n'
                              '  mpc-market round close --broker 127.0.0.1:7300 --keys deploy/keys --round r1 '
                              '--wait 120\n'
                              '  mpc-market round list --broker 127.0.0.1:7300 --keys deploy/keys')
    actions = p.add_subparsers(dest='action', required=True, metavar='ACTION')
    wait_help = 'then wait up to this long (a week at most) until the round is {}; exit 1 if it is not'

    o = actions.add_parser('open', help='announce a round (slots, market, gate closure) at every node',
                           formatter_class=formatter,
                           description='Announce a round at every node; every node signs its parameters. Opening '
                                       'a round id that exists with other parameters is refused.',
                           epilog='example:\n  mpc-market round open --broker 127.0.0.1:7300 --keys deploy/keys '
                                  '--round r1 --slots 46-49 --market community/market.toml --gate-closure-in 120 '
                                  '--readings-deadline-in 900 --day 2026-12-01')
    client_args(o, 'operator', 'required')
    o.add_argument('--slots', type=slot_list,
                   help=f'slots traded in the round: 0-95 or 0,1,2; at most {ROUND_SLOTS}; with --day and a market '
                        'file that gives a start, the day\'s slots (92 or 100 on a DST change in its timezone) '
                        'by default, and --slots must lie in that day')
    o.add_argument('--market', required=True, help='market TOML of the round')
    o.add_argument('--flex', metavar='REQUESTS.csv',
                   help='open a flexibility round for these public requests (request,buyer,feeder,slot,direction,'
                        'volume_wh,price_cap[,penalty_price]; the feeders: the market\'s [zones]): its slots are the '
                        'request slots, participants submit offers with `mpc-market flex submit`, priced by the '
                        'market file\'s flex_pricing (pay-as-clear by default); '
                        'see docs/flexibility.md')
    o.add_argument('--energy-round', metavar='ROUND',
                   help='with --flex: the energy round (of the same market, with a readings window, not settled '
                        'yet) whose settlement delivers the activations: its positions are adjusted by them, '
                        'deliveries are paid or penalised and bills gain flexibility revenue and penalty')
    o.add_argument('--mechanism', choices=MECHANISMS,
                   help='clear this round with this mechanism instead of the market file\'s; the community '
                        'schemes price whole slots and ignore zones')
    o.add_argument('--gate-closure-in', type=bounded_seconds(0), default=60.0, metavar='SECONDS',
                   help='seconds from now until orders are no longer accepted, up to a year')
    o.add_argument('--readings-deadline-in', type=bounded_seconds(1), metavar='SECONDS',
                   help='settle the round: meter readings are taken until this many seconds after the gate '
                        'closure (without it the round is cleared, never settled)')
    o.add_argument('--readings-open-in', type=bounded_seconds(0), default=0.0, metavar='SECONDS',
                   help='the readings window opens this many seconds after the gate closure (0: as soon as the '
                        'round is cleared)')
    o.add_argument('--day', type=day_text, help='the delivery day YYYY-MM-DD, for meter uploads and bills over a '
                   'period')
    o.add_argument('--wait', type=bounded_seconds(0, 7 * 86400), metavar='SECONDS', help=wait_help.format('cleared'))

    c = actions.add_parser('close', help='move the gate closure to now (or close the readings window)',
                           formatter_class=formatter,
                           description='Close an open round now (the nodes clear it), or close the readings '
                                       'window of a cleared round now (the nodes settle it).')
    client_args(c, 'operator', 'required')
    c.add_argument('--wait', type=bounded_seconds(0, 7 * 86400), metavar='SECONDS', help=wait_help.format('cleared'))

    s = actions.add_parser('status', help='one round\'s phase, counts and attempts', formatter_class=formatter)
    client_args(s, 'operator', 'optional')
    s.add_argument('--wait', type=bounded_seconds(0, 7 * 86400), metavar='SECONDS', help=wait_help.format('cleared'))

    lst = actions.add_parser('list', help='every round with its phase and times', formatter_class=formatter)
    client_args(lst, 'operator', 'none')

    st = actions.add_parser('settled', help='wait until a round is settled', formatter_class=formatter,
                            description='Wait until the nodes settled the round against its meter readings '
                                        '(after its readings deadline). A round opened without '
                                        '--readings-deadline-in is never settled: that is said at once.')
    client_args(st, 'operator', 'required')
    st.add_argument('--wait', required=True, type=bounded_seconds(0, 7 * 86400), metavar='SECONDS',
                    help=wait_help.format('settled'))
    for action in (o, c, s, lst, st):
        action.set_defaults(func=cmd_round)
