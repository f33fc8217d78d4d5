"""Local market commands: ``clear``, ``settle``, ``generate``, ``import profiles`` and ``demo``.
"""

import os
import sys
import tempfile
import time

from ..common.errors import InputError
from ..mpc.jobs import ORDERS_PER_CHUNK

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
    """Warn about the orders whose limit cannot trade at any price of the market's range.

    A few are each named by file and line (a participant's real mistake); more than
    MAX_WARNINGS (a generated community has ~1 % by design) are one line with the count per
    reason and the first of them. Community schemes ignore limit prices: nothing to warn about."""
    untradeable = book.untradeable()
    if quiet or not untradeable or book.config.mechanism != 'double-auction':
        return
    config = book.config
    floor, ceiling = config.format_price(config.floor_units), config.format_price(config.ceiling_units)
    if len(untradeable) <= MAX_WARNINGS:
        for o in untradeable:
            bound = f'above the ceiling {ceiling}' if o.side == 'sell' else f'below the floor {floor}'
            print(f'warning: {orders_path}:{o.line}: limit_price: {o.participant} {o.side} limit {o.limit_price} is '
                  f'{bound}; order settled with the retailer', file=sys.stderr)
        return
    sells = sum(1 for o in untradeable if o.side == 'sell')
    reasons = [f'{n} {what}' for n, what in ((sells, f'sells above the ceiling {ceiling}'),
                                             (len(untradeable) - sells, f'buys below the floor {floor}')) if n]
    first = untradeable[0]
    print(f'warning: {orders_path}: {len(untradeable)} orders cannot trade at any price in the market\'s range '
          f'{floor}..{ceiling} ({", ".join(reasons)}); they settle with the retailer (first: line {first.line}, '
          f'{first.participant} {first.side} limit {first.limit_price})', file=sys.stderr)



MIN_ZONE_MEMBERS = 3


def _warn_small_zones(book, quiet):
    """A zone's price and volume are public: with one or two members they reveal their orders."""
    members = {}
    for o in book.orders:
        members.setdefault(book.zone_of.get(o.participant), set()).add(o.participant)
    for zone in book.zones:
        count = len(members.get(zone, ()))
        if 0 < count < MIN_ZONE_MEMBERS and not quiet:
            print(f'warning: zone {zone} has {count} participant{"s" if count > 1 else ""} with orders: its public '
                  'price and volume reveal about as much as their own orders', file=sys.stderr)



def _clear(orders_path, config_path, nodes, engine, mode, chunk, quiet, committee=None):
    from .. import api
    from ..common.errors import EngineError
    from ..mpc.committee import committee_size

    book = api.load_book(orders_path, config_path)
    if mode == 'peers':  # the committee's own rule, named against the orders file
        try:
            committee_size(len(book.participants), committee)
        except EngineError as e:
            raise InputError(orders_path, 1, 'participant', str(e)) from None
    _warn_untradeable(book, orders_path, quiet)
    _warn_small_zones(book, quiet)
    return book.config, book, api.clear(book, engine, nodes, mode, chunk, progress=_progress_printer(quiet),
                                        committee=committee)



def _traded(slot):
    """All energy traded in a slot: the market's, or every zone's plus the cross-zone auction's."""
    return slot.traded_wh + sum(z.traded_wh for z in slot.zones or ())


def _volume_line(config, book, result):
    """The first summary line: what traded, as the mechanism defines it (the CSVs' figures)."""
    from ..market.output import volumes
    v = volumes(config, result)
    head = f'{len(book.orders)} orders of {len(book.participants)} participants in {len(book.slots)} slots; '
    if v.mechanism != 'double-auction':  # every order trades whole: nothing is "unmatched", the rest is the grid's
        return (head + f'{v.mechanism}: every order trades in full at its slot\'s buy or sell price; '
                f'{v.trading_slots} slots matched {v.local_wh} Wh within the community; the retailer supplied '
                f'{v.retailer_sells_wh} Wh and took {v.retailer_buys_wh} Wh (the slots\' shortfall and surplus)')
    residual = f' ({v.residual_wh} Wh of it from or to the retailer: the rounding residual)' if v.residual_wh else ''
    traded = f'{v.local_wh} Wh locally at the clearing price'
    if config.zoned:
        traded = (f'{v.local_wh - v.cross_wh} Wh within zones and {v.cross_wh} Wh across zones, network fees '
                  f'{config.format_amount(v.fee_amount)} {config.currency}')
    return (head + f'{v.trading_slots} slots traded {traded}{residual}; unmatched orders with the retailer: '
            f'{v.retailer_sells_wh} Wh imported, {v.retailer_buys_wh} Wh exported')


def _summary(config, book, result):
    stats = result.stats
    lines = [_volume_line(config, book, result)]
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
    if stats.get('committee'):
        lottery = stats['committee']
        lines.append(f'S1 committee drawn by lottery from {len(lottery["peers"])} peers: '
                     f'{", ".join(lottery["committee"])} (seed {lottery["seed"][:16]}..., transcript in summary.json; '
                     'check it with mpc-market verify-committee)')
    return '\n'.join(lines)



def cmd_verify_committee(args):
    from ..common.errors import EngineError, KeyFileError
    from ..mpc import committee
    if not args.registry:
        raise InputError(args.transcript, 0, 'registry', 'give --registry FILE, the registry of the round\'s peers '
                         'that you hold: a transcript\'s own copy of the keys proves nothing')
    try:
        registry = committee.load_registry(args.registry)
    except KeyFileError as e:
        raise InputError(args.registry, 1, 'registry', str(e).removeprefix(f'{args.registry}: ')) from None
    try:
        document = committee.read_json(args.transcript, 'transcript')
    except EngineError as e:
        raise InputError(args.transcript, 1, 'transcript', str(e)) from None
    transcript = document
    if isinstance(document, dict) and isinstance(document.get('stats'), dict):  # a clear's summary.json
        transcript = document['stats'].get('committee')
    elif not (isinstance(document, dict) and ({'lottery', 'commitments'} & set(document))):
        transcript = None
    if not isinstance(transcript, dict):
        raise InputError(args.transcript, 1, 'committee', 'no committee lottery transcript in this file')
    try:
        seats = committee.verify(transcript, registry, args.round)
    except EngineError as e:
        raise InputError(args.transcript, 1, 'committee', str(e).removeprefix('committee transcript: ')) from None
    withheld = sum(len(a['withheld']) for a in transcript['attempts'])
    print(f'committee of round {transcript["round"]} verified against {args.registry}: {", ".join(seats)} '
          f'(drawn from {len(transcript["peers"])} peers, every one signed'
          + (f'; {withheld} withheld their nonce and were excluded)' if withheld else ')'))
    return 0


def _hash_inputs(files):
    """[InputFile] of (role, path) pairs, hashed before the run reads them."""
    from ..market.output import hash_input
    try:
        return [hash_input(role, path) for role, path in files]
    except OSError as exc:
        raise InputError(exc.filename or files[0][1], 0, 'file', exc.strerror or str(exc)) from None


def _check_unchanged(inputs):
    """Refuse a run whose input changed while it was read: summary.json's hashes must be the inputs'."""
    for before, after in zip(inputs, _hash_inputs([(f.role, f.path) for f in inputs]), strict=True):
        if before != after:
            raise InputError(before.path, 0, 'file', 'changed while it was being read; run again')


def _provenance(command, args, inputs, book, stats):
    from ..market.output import make_provenance
    _check_unchanged(inputs)
    return make_provenance(command, vars(args), inputs, book, stats)


def cmd_clear(args):
    from ..market.output import write_results
    if args.committee is not None and args.mode != 'peers':
        raise InputError(args.orders, 1, 'committee', '--committee draws the nodes of --mode peers only')
    inputs = _hash_inputs([('market', args.config), ('orders', args.orders)])
    config, book, result = _clear(args.orders, args.config, args.nodes, args.engine, args.mode, args.chunk,
                                  args.quiet, args.committee)
    write_results(args.out, config, result, _provenance('clear', args, inputs, book, result.stats))
    print(_summary(config, book, result))
    feeders = (f' and feeder_positions.csv ({len({f.feeder for f in result.feeders})} zones of at least '
               f'{config.feeder_min_cohort} participants)' if config.feeder_min_cohort else '')
    print(f'wrote public.csv, participants.csv and summary.json (with the run\'s provenance){feeders} to {args.out}; '
          f'prices in {config.currency}/kWh, amounts in {config.currency}')
    return 0



def cmd_settle(args):
    from .. import api
    from ..market.config import load_config
    from ..market.output import write_settlement
    from ..market.readings import load_readings
    from ..market.settlement import complete_readings
    inputs = _hash_inputs([('market', args.config), ('orders', args.orders), ('readings', args.readings)])
    config = load_config(args.config)
    readings = load_readings(args.readings, config)
    book = api.load_book(args.orders, config, mechanism=args.mechanism, readings=readings)
    config = book.config
    net_of, missing = complete_readings(book, {pair: net for pair, (net, _) in readings.items()})
    if missing and not args.quiet:
        print(f'note: {len(missing)} orders have no meter reading (first: {missing[0][0]} in slot {missing[0][1]}); '
              'settled by the missing-reading rule: the bought energy counts as imported, nothing as exported',
              file=sys.stderr)
    _warn_untradeable(book, args.orders, args.quiet)
    _warn_small_zones(book, args.quiet)
    result = api.settle(book, net_of, args.engine, args.nodes, args.chunk, progress=_progress_printer(args.quiet))
    provenance = _provenance('settle', args, inputs, book, {**result.clearing.stats, **result.stats})
    write_settlement(args.out, config, result, provenance)
    print(_summary(config, book, result.clearing))
    deviation = sum(r.deviation_amount for r in result.rows)
    saving = sum(b.saving for b in result.bills)
    money = config.currency
    print(f'settled {len(result.rows)} participant-slots: deviations net {config.format_amount(deviation)} {money} '
          f'to the retailer; community saving {config.format_amount(saving)} {money} against retailer-only bills')
    print(f'wrote public.csv, participants.csv, bills.csv, retailer.csv and summary.json (with the run\'s '
          f'provenance) to {args.out}; prices in {money}/kWh, amounts in {money}')
    return 0



def default_config():
    from decimal import Decimal

    from ..market.config import MarketConfig
    return MarketConfig(Decimal('0'), Decimal('1000'), Decimal('0.001'), (1 << 24) - 1)



def _generate_slots(args):
    """--slots, or --days whole days of 96 slots (96 when neither is given)."""
    from ..common.errors import COMMAND_LINE
    from ..market.generate import SLOTS_PER_DAY
    if args.days is not None and args.slots is not None:
        raise InputError(COMMAND_LINE, 0, 'days', 'give --days or --slots, not both')
    return SLOTS_PER_DAY * args.days if args.days is not None else args.slots or SLOTS_PER_DAY


def cmd_generate(args):
    from ..common.errors import COMMAND_LINE
    from ..market.generate import first_slot_and_stop, write_community
    if args.grid is not None:
        return _generate_grid(args)
    if args.participants is None:
        raise InputError(COMMAND_LINE, 0, 'participants', 'how many households? (or --grid simbench:CODE)')
    slots = _generate_slots(args)
    _check_size(args.participants, slots)
    day, location = None, None
    if args.profiles is not None:
        from ..market.profiles import LATITUDE, LONGITUDE, parse_day
        day = parse_day(args.profiles)
        location = (LATITUDE if args.latitude is None else args.latitude,
                    LONGITUDE if args.longitude is None else args.longitude)
    elif args.latitude is not None or args.longitude is not None:
        option = 'latitude' if args.latitude is not None else 'longitude'
        raise InputError(COMMAND_LINE, 0, option, 'places the sun of --profiles; give --profiles [DAY] too')
    orders, config, count, readings = write_community(args.out, args.participants, slots, args.seed,
                                                      args.zones, args.network_fee, day, location, args.flex)
    first, stop = first_slot_and_stop(slots)
    where = f' at {location[0]:g} N {location[1]:g} E' if location else ''
    print(f'wrote {count} orders of {args.participants} households for slots {first}-{stop - 1} '
          f'({slots} x 15 min' + (f' from 00:00 of {day}, BDEW H0 load and clear-sky PV{where}; market.toml '
                                  'time-stamps the slots' if day else '')
          + f') to {orders}')
    print(f'      meter readings to {readings}, market to {config}, feeder map to '
          f'{os.path.join(args.out, "feeders.csv")}')
    _report_flex(args)
    print(f'next: mpc-market clear --orders {orders} --config {config} --out result/')
    return 0


def _generate_grid(args):
    """generate --grid simbench:CODE: the households, feeders and profiles of a simbench LV grid's day."""
    from ..common.errors import COMMAND_LINE
    from ..market.grid import DEFAULT_DAY, day_rows, parse_grid, parse_grid_day, write_grid_community
    code = parse_grid(args.grid)
    day = parse_grid_day(args.day or DEFAULT_DAY)
    for option in ('participants', 'slots', 'days', 'profiles', 'latitude', 'longitude'):
        if getattr(args, option, None) is not None:
            raise InputError(COMMAND_LINE, 0, option, 'the grid gives the participants, the day\'s slots and the '
                             'profiles: leave it out with --grid')
    grid, paths, count = write_grid_community(args.out, code, day, args.seed, args.zones, args.network_fee, args.flex)
    start, _, slots = day_rows(day)
    print(f'wrote {count} orders of {len(grid.participants)} participants of simbench:{code} '
          f'({len(grid.feeder_lines)} feeders under {len(grid.zone_trafos)} transformer) for {day} '
          f'({slots} x 15 min from 00:00 {start:%Z}, simbench\'s load and PV profiles) to {paths["orders.csv"]}')
    print(f'      meter readings to {paths["readings.csv"]}, market to {paths["market.toml"]}, feeder map to '
          f'{paths["feeders.csv"]}')
    _report_flex(args)
    print(f'next: mpc-market clear --orders {paths["orders.csv"]} --config {paths["market.toml"]} --out result/')
    return 0


def _report_flex(args):
    """generate --flex: where the offers and the example requests went."""
    if args.flex:
        offers, requests = (os.path.join(args.out, name) for name in ('offers.csv', 'requests.csv'))
        with open(offers) as f:
            count = sum(1 for _ in f) - 1
        print(f'      {count} flexibility offers (EV, heat pump, battery, PV, random) to {offers}, example requests '
              f'to {requests}')



def cmd_import_profiles(args):
    from ..common.errors import COMMAND_LINE
    from ..market.config import load_config
    from ..market.importer import bidding_rule, import_profiles, read_series
    config = load_config(args.config)
    rule = bidding_rule(config, args.buy_limit, args.sell_limit)
    pv_files = args.pv or []
    if not args.files and not pv_files:
        raise InputError(COMMAND_LINE, 0, 'pv', 'no series given: FILE ... (load or net series) and/or --pv FILE')
    if config.start is None:
        raise InputError(args.config, 1, 'start', 'the market file gives no start: add start = ... (the instant '
                                                  'slot 0 begins, e.g. 2026-06-17T00:00:00+02:00) to place the '
                                                  'series on slots')
    series = [one for path in args.files for one in read_series(path, config, args.participant)]
    series += [one for path in pv_files for one in read_series(path, config, args.participant, pv=True)]
    done = import_profiles(series, config, args.out, rule, args.forecast_error / 100, args.seed)
    if done.capped and not args.quiet:
        name, slot, wh = done.capped[0]
        print(f'warning: {len(done.capped)} orders capped at the market\'s max_order_wh {config.max_order_wh} Wh '
              f'(first: {name} nets {wh} Wh in slot {slot}); their readings keep the whole net', file=sys.stderr)
    money = f'{config.currency}/kWh'

    def counted(n: int, word: str) -> str:
        return f'{n} {word}' if n == 1 else f'{n} {word}s'
    print(f'imported {counted(done.participants, "participant")} onto slots {done.first_slot}-{done.last_slot} '
          f'({config.slot_start_text(done.first_slot)} to {config.slot_start_text(done.last_slot + 1)}, '
          f'{config.slot_minutes}-minute slots): {counted(done.buys, "buy")} at {rule.buy_limit} and '
          f'{counted(done.sells, "sell")} at {rule.sell_limit} {money} to {done.orders_path}')
    error = f'with a forecast error of {args.forecast_error:g} %' if args.forecast_error else 'the series itself'
    print(f'      {done.readings} meter readings ({error}) to {done.readings_path}')
    print(f'next: mpc-market settle --orders {done.orders_path} --readings {done.readings_path} '
          f'--config {args.config} --out bills/')
    return 0


def _import_parsers(sub, formatter):
    from ..market.config import MAX_ORDER_WH_LIMIT
    from .options import SEED_MAX, bounded_float, bounded_int, participant_id
    p = sub.add_parser('import', help='turn time series into orders and meter readings (import profiles)',
                       formatter_class=formatter,
                       description='Bring your own data: `mpc-market import profiles` turns per-household time '
                                   'series into orders.csv and readings.csv for a market file.')
    kinds = p.add_subparsers(dest='kind', required=True, metavar='KIND')
    p = kinds.add_parser('profiles', help='per-household power or energy series -> orders.csv, readings.csv',
                         formatter_class=formatter,
                         description='Integrate per-household series exactly onto the market\'s slots (its start '
                                     'and slot_minutes) and write OUT/orders.csv (one order per slot with a net '
                                     'position: buy the net import at --buy-limit, sell the net export at '
                                     '--sell-limit) and OUT/readings.csv (the series as meter readings). FILE is a '
                                     'gsy-e profile INTERVAL;POWER(W) (one household, named by the file stem: + '
                                     'consumption, - production) or a long CSV participant,datetime,power_w|energy_wh '
                                     '(datetimes ISO 8601 with an offset). docs/market.md gives the formats, the '
                                     'bidding rule and the rounding rule.',
                         epilog='examples:\n'
                                '  mpc-market import profiles h01.csv h02.csv --config market.toml --out community/\n'
                                '  mpc-market import profiles load/h01.csv --pv pv/h01.csv --config market.toml '
                                '--out community/\n'
                                '  mpc-market import profiles series.csv --config market.toml --out community/ '
                                '--buy-limit 0.25 --sell-limit 0.08 --forecast-error 10')
    p.add_argument('files', nargs='*', metavar='FILE',
                   help='gsy-e profiles (one household each) or long CSVs (participant,datetime,power_w|energy_wh)')
    p.add_argument('--pv', action='append', metavar='FILE',
                   help='a gsy-e PV profile (positive = production): counts as export of the household named by '
                        'its stem (repeatable)')
    p.add_argument('--participant', type=participant_id, metavar='NAME',
                   help='the household of the gsy-e profiles given (default: each file\'s stem)')
    p.add_argument('--config', required=True, help='market TOML with start and slot_minutes (the slot grid)')
    p.add_argument('--out', required=True, help='output directory (orders.csv and readings.csv appear together)')
    p.add_argument('--buy-limit', metavar='PRICE',
                   help='limit of the buy orders, currency/kWh (default: price_ceiling minus a quarter of the band)')
    p.add_argument('--sell-limit', metavar='PRICE',
                   help='limit of the sell orders (default: price_floor plus a quarter of the band)')
    p.add_argument('--forecast-error', type=bounded_float(0, 100, ' %'), default=0.0, metavar='PCT',
                   help='readings = the series times (1 + e), e normal with this standard deviation in %% '
                        '(0: the readings are the series)')
    p.add_argument('--seed', type=bounded_int(0, SEED_MAX), default=1, help='random seed of --forecast-error')
    p.add_argument('--quiet', action='store_true',
                   help=f'no warning about orders capped at max_order_wh (at most {MAX_ORDER_WH_LIMIT})')
    p.set_defaults(func=cmd_import_profiles)


def _check_size(participants, slots):
    """A community the machine can hold, refused before anything is allocated or written."""
    from ..common.errors import BadParameter
    from ..market.generate import check_size
    try:
        check_size(participants, slots)
    except BadParameter as exc:
        raise InputError('<command line>', 0, exc.parameter, str(exc)) from None



def slot_clock(config, slot: int) -> str:
    """hh:mm a slot starts at: local time in the market's timezone when it has a start, else the
    time of day of a bare index (slot % slots per day of slot_minutes, from 00:00).

    Args:
        config: the MarketConfig.
        slot: the slot.

    Returns:
        'hh:mm'.
    """
    import zoneinfo
    at = config.slot_start(slot)
    if at is not None:
        return at.astimezone(zoneinfo.ZoneInfo(config.timezone)).strftime('%H:%M')
    minutes = slot * config.slot_minutes % (24 * 60)
    return f'{minutes // 60:02d}:{minutes % 60:02d}'


def cmd_demo(args):
    from ..market.generate import write_community
    from ..market.output import public_table, write_results
    _check_size(args.participants, args.slots)
    work = tempfile.mkdtemp(prefix='mpc-market-demo-')
    orders, config_path, count, _ = write_community(work, args.participants, args.slots, args.seed)
    print(f'Community: {args.participants} households, {args.slots} slots of 15 minutes, {count} orders '
          f'(generated in {work})')
    started = time.perf_counter()
    config, book, result = _clear(orders, config_path, args.nodes, 'mpc', 'local', ORDERS_PER_CHUNK, False)
    elapsed = time.perf_counter() - started
    write_results(os.path.join(work, 'out'), config, result)
    print(f'Cleared under MPC by {args.nodes} market node processes in {elapsed:.1f} s. Public results '
          '(the only thing the nodes learn):')
    price_head = f'price {config.currency}/kWh'
    clock_head = 'time' if config.start is None else f'time {config.timezone}'
    print(f'  {"slot":>4} {clock_head:>5} {price_head:>13} {"traded Wh":>10} {"residual":>8}')
    for row in public_table(config, result):
        if row['traded_wh']:
            slot = int(row['slot'])
            print(f'  {slot:>4} {slot_clock(config, slot):>{max(5, len(clock_head))}} {row["price"]:>13} '
                  f'{row["traded_wh"]:>10} {row["residual_wh"]:>8}')
    quiet_slots = sum(1 for s in result.slots if not s.traded_wh)
    print(f'  ({quiet_slots} slots without local trade)')
    shown = sorted({r.participant for r in result.rows if r.matched_wh})[:3]
    for name in shown:
        rows = [r for r in result.rows if r.participant == name]
        matched = sum(r.matched_wh for r in rows)
        total = sum(r.amount for r in rows)
        print(f'Private result of {name} (only {name} can reconstruct it): {len(rows)} orders, '
              f'{matched} Wh matched locally, net amount {config.format_amount(total)} {config.currency}')
        for r in [r for r in rows if r.matched_wh][:2]:
            print(f'    slot {r.slot}: {r.side} {r.energy_wh} Wh, matched {r.matched_wh} Wh, '
                  f'amount {config.format_amount(r.amount)} {config.currency}')
    same = _agrees_with_reference(book, result)
    print('Plaintext reference agrees exactly.' if same else 'MISMATCH with the plaintext reference!')
    print(_summary(config, book, result))
    return 0 if same and _demo_zoned(args, work) else 1


def _agrees_with_reference(book, result):
    from ..market.plain import clear_plain
    plain = clear_plain(book)
    return plain.slots == result.slots and plain.rows == result.rows


def _demo_zoned(args, work):
    """The same community as 4 communities of whole feeders trading across at a network fee."""
    from ..market.generate import write_community
    zoned_dir = os.path.join(work, 'zoned')
    orders, config_path, _, _ = write_community(zoned_dir, args.participants, args.slots, args.seed, zones=4)
    started = time.perf_counter()
    config, book, result = _clear(orders, config_path, args.nodes, 'mpc', 'local', ORDERS_PER_CHUNK, True)
    print(f'\nThe same community as a zoned market: {len(book.zones)} communities of whole feeders clear on '
          f'their own, then trade what is left across at a network fee of {config.network_fee} {config.currency}/kWh '
          f'({time.perf_counter() - started:.1f} s under MPC). Busiest slots:')
    fees_head = f'fees {config.currency}'
    print(f'  {"slot":>4} ' + ' '.join(f'{"zone " + z:>12}' for z in book.zones) + f' {"cross":>12} {fees_head:>9}')
    busiest = sorted(result.slots, key=lambda s: -_traded(s))[:4]

    def cell(r):
        return f'{r.traded_wh}@{config.format_price(r.price_units)}' if r.price_units is not None else '-'

    for s in sorted(busiest, key=lambda s: s.slot):
        print(f'  {s.slot:>4} ' + ' '.join(f'{cell(z):>12}' for z in s.zones) + f' {cell(s):>12} '
              f'{config.format_amount(s.fee_amount):>9}')
    same = _agrees_with_reference(book, result)
    print(f'  (Wh@price in {config.currency}/kWh) Plaintext reference agrees exactly.' if same
          else 'MISMATCH with the plaintext reference (zoned)!')
    return same


def _engine_options(p):
    """The options clear and settle share: where the market is computed, and how."""
    from ..api import ENGINES
    from .options import bounded_int
    p.add_argument('--nodes', type=bounded_int(3, 11), default=3, metavar='M',
                   help='market nodes, 3..11 (threshold (M-1)/2: an honest majority)')
    p.add_argument('--engine', choices=ENGINES, default='mpc',
                   help='mpc: node processes on this machine; plain: the plaintext reference')
    p.add_argument('--chunk', type=bounded_int(1, 1 << 20), default=ORDERS_PER_CHUNK,
                   help='orders shared and validated per batch, 1..1048576 (bounds node memory)')
    p.add_argument('--quiet', action='store_true', help='no progress and no warnings on stderr')


def add_parsers(sub, formatter):
    from ..api import MODES
    from ..market.config import MECHANISMS
    from ..market.generate import MAX_PARTICIPANTS, MAX_SIZE, MAX_SLOTS, MAX_ZONES
    from ..market.grid import DEFAULT_DAY as GRID_DAY
    from ..market.profiles import DEFAULT_DAY as PROFILE_DAY
    from ..market.profiles import LATITUDE as PROFILE_LATITUDE
    from ..market.profiles import LONGITUDE as PROFILE_LONGITUDE
    from .options import SEED_MAX, bounded_float, bounded_int, decimal_text
    sizes = f'; at most {MAX_PARTICIPANTS} participants, {MAX_SLOTS} slots and {MAX_SIZE} participant-slots'
    p = sub.add_parser('clear', help='clear an orders file (under MPC by default)', formatter_class=formatter,
                       description='Clear every slot of an orders file: price, traded volume, and each order\'s '
                                   'match and amount. Writes public.csv, participants.csv and summary.json.',
                       epilog='examples:\n'
                              '  mpc-market clear --orders community/orders.csv --config community/market.toml '
                              '--out result/\n'
                              '  mpc-market clear ... --engine plain      # the plaintext reference, same outputs\n'
                              '  mpc-market clear ... --nodes 5           # five market nodes\n'
                              '  mpc-market clear ... --mode peers        # scenario S1: the prosumers run the '
                              'nodes\n'
                              '  mpc-market clear ... --mode peers --committee 3   # S1: 3 of them, drawn by lottery')
    p.add_argument('--orders', required=True, help='orders CSV or JSON: participant,slot,side,energy_wh,limit_price')
    p.add_argument('--config', required=True, help='market TOML (price_floor, price_ceiling, tick, ...)')
    p.add_argument('--out', required=True, help='output directory (files are replaced together at the end)')
    _engine_options(p)
    p.add_argument('--mode', choices=MODES, default='local',
                   help='peers: the participants run the nodes themselves (scenario S1): every one of up to 7, '
                        'else a committee drawn by a public lottery each run')
    p.add_argument('--committee', type=bounded_int(3, 11), metavar='M',
                   help='with --mode peers: committee size, 3..11 (default: every peer up to 7, else 5)')
    p.set_defaults(func=cmd_clear)

    p = sub.add_parser('verify-committee', help='check an S1 committee lottery against the peers\' registry',
                       formatter_class=formatter,
                       description='Check an S1 lottery transcript against the registry of the round\'s peers that '
                                   'you hold: the peers are exactly its participants, every peer signed its '
                                   'commitment and the whole commitment list before any nonce was revealed, every '
                                   '32-byte nonce matches its commitment, peers that withheld theirs were excluded '
                                   'and the draw re-run, and the committee (of committee_size(peers) seats) is the '
                                   'seed\'s ranking. Prints the committee; exit 2 if anything does not match.',
                       epilog='example:\n'
                              '  mpc-market verify-committee result/summary.json --registry keys/registry.json')
    p.add_argument('transcript', help='summary.json of a peers-mode clear, or the transcript itself (JSON)')
    p.add_argument('--registry', metavar='FILE',
                   help='required: the round\'s registry.json (mpc-market keys participants) as you hold it; '
                        'a transcript\'s own "registry" copy only checks a local run against itself')
    p.add_argument('--round', metavar='ID', help='the round you expect (refuse a transcript of another round)')
    p.set_defaults(func=cmd_verify_committee)

    p = sub.add_parser('settle', help='clear and settle deviations from meter readings; write bills',
                       formatter_class=formatter,
                       description='Clear the orders and settle every deviation of the meter readings from the '
                                   'cleared positions, in one MPC session. Writes participants.csv (one row per '
                                   'order or reading), bills.csv, retailer.csv, public.csv and summary.json.',
                       epilog='examples:\n'
                              '  mpc-market settle --orders community/orders.csv --readings community/readings.csv '
                              '--config community/market.toml --out bills/\n'
                              '  mpc-market settle ... --mechanism sdr    # supply-demand ratio pricing')
    p.add_argument('--orders', required=True, help='orders CSV or JSON')
    p.add_argument('--readings', required=True, help='meter readings CSV: participant,slot,net_wh (+ import, - export)')
    p.add_argument('--config', required=True, help='market TOML')
    p.add_argument('--out', required=True, help='output directory')
    _engine_options(p)
    p.add_argument('--mechanism', choices=MECHANISMS,
                   help='pricing mechanism (default: the market TOML\'s mechanism, else double-auction)')
    p.set_defaults(func=cmd_settle)

    p = sub.add_parser('generate', help='write a synthetic community: orders, meter readings, feeders, market',
                       formatter_class=formatter,
                       description='Write OUT/orders.csv, OUT/readings.csv (with forecast errors), OUT/feeders.csv '
                                   '(20 households per feeder; with --grid the lines leaving the transformer) and '
                                   'OUT/market.toml. One slot is 15 minutes; the '
                                   'slots are centred on midday (slot 48), so a few slots still have sun.',
                       epilog='example:\n  mpc-market generate --participants 1000 --slots 96 --out community/')
    p.add_argument('--participants', type=bounded_int(1, MAX_PARTICIPANTS),
                   help='households (about a third with PV), required without --grid' + sizes)
    p.add_argument('--slots', type=bounded_int(1, MAX_SLOTS),
                   help=f'15-minute slots (default 96, one whole day); {MAX_SLOTS} at most')
    p.add_argument('--days', type=bounded_int(1, MAX_SLOTS // 96), metavar='N',
                   help='N whole days of 96 slots from 00:00 (with --profiles: from DAY), instead of --slots')
    p.add_argument('--seed', type=bounded_int(0, SEED_MAX), default=1,
                   help='random seed (the same seed writes the same files)')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--zones', type=bounded_int(0, MAX_ZONES), default=0, metavar='N',
                   help='a zoned market: N communities of whole feeders (zone column in orders.csv), which '
                        f'clear first and then trade across at the network fee; 0 = one market; {MAX_ZONES} at most')
    p.add_argument('--network-fee', type=decimal_text, default='0.010', metavar='PRICE',
                   help='with --zones: fee per kWh on energy crossing communities (a multiple of the tick)')
    p.add_argument('--profiles', nargs='?', const=PROFILE_DAY, metavar='DAY',
                   help=f'load from the BDEW H0 standard profile and PV from clear-sky irradiance from DAY on '
                        f'(YYYY-MM-DD, default {PROFILE_DAY}); market.toml then gives the slots\' start, length '
                        'and timezone (the location\'s standard time); needs pip install -e \'.[profiles]\'')
    p.add_argument('--latitude', type=bounded_float(-90, 90), metavar='DEG',
                   help=f'with --profiles: the location\'s latitude, degrees north (default {PROFILE_LATITUDE:g})')
    p.add_argument('--longitude', type=bounded_float(-180, 180), metavar='DEG',
                   help=f'with --profiles: the location\'s longitude, degrees east (default {PROFILE_LONGITUDE:g})')
    p.add_argument('--grid', metavar='simbench:CODE',
                   help='the participants, feeders and profiles of a simbench LV grid (e.g. '
                        'simbench:1-LV-rural1--0-sw): one per load with the PV at its bus, a feeder per line '
                        'leaving the transformer, which is the zone (--zones 1 for a zoned market); needs '
                        'pip install -e \'.[grid]\'')
    p.add_argument('--day', metavar='YYYY-MM-DD',
                   help=f'with --grid: the day of simbench\'s 2016 profiles (default {GRID_DAY})')
    p.add_argument('--flex', action='store_true',
                   help='also OUT/offers.csv (EV, heat-pump, battery, PV and random flexibility offers from the '
                        'profiles, seeded) and OUT/requests.csv (example DSO requests per feeder); see '
                        'docs/flexibility.md')
    p.set_defaults(func=cmd_generate)
    _import_parsers(sub, formatter)

    p = sub.add_parser('demo', help='generate a community and clear it under MPC, with progress',
                       formatter_class=formatter,
                       description='Generate a community in a temporary directory, clear it with market node '
                                   'processes, print the public results and a few participants\' own results, '
                                   'and check them against the plaintext reference.',
                       epilog='example:\n  mpc-market demo --participants 1000 --slots 4')
    p.add_argument('--participants', type=bounded_int(1, MAX_PARTICIPANTS), default=200, help='households' + sizes)
    p.add_argument('--slots', type=bounded_int(1, MAX_SLOTS), default=96, help='15-minute slots')
    p.add_argument('--nodes', type=bounded_int(3, 11), default=3, metavar='M', help='market nodes, 3..11')
    p.add_argument('--seed', type=bounded_int(0, SEED_MAX), default=2026, help='random seed')
    p.set_defaults(func=cmd_demo)
