"""``mpc-market stats keygen | encrypt | submit | aggregate | decrypt | aggregator | fetch``."""

import os
import sys
import textwrap
import time

from ..common.errors import BadParameter, InputError
from ..market.config import MarketConfig

MAX_REJECTIONS_SHOWN = 20


def _report_rejections(messages):
    """Print at most MAX_REJECTIONS_SHOWN rejections (and how many more) to stderr."""
    for message in messages[:MAX_REJECTIONS_SHOWN]:
        print(f'rejected: {message}', file=sys.stderr)
    if len(messages) > MAX_REJECTIONS_SHOWN:
        print(f'rejected: {len(messages) - MAX_REJECTIONS_SHOWN} more', file=sys.stderr)


def _write_file(path, text):
    from ..market.output import write_all
    write_all(os.path.dirname(os.path.abspath(path)), {os.path.basename(path): text})


def cmd_keygen(args):
    from ..stats import paillier
    started = time.perf_counter()
    try:
        public, private = paillier.generate(args.name, args.level, args.bits, args.slots, args.max_reading_wh,
                                            args.max_meters, args.guard_bits)
    except BadParameter as exc:
        raise InputError('<command line>', 0, exc.parameter, str(exc)) from None
    pub_path, key_path = paillier.write_key_pair(args.out, public, private)
    layout = public.layout
    print(f'{args.bits}-bit Paillier key {public.name} ({public.level} aggregates) '
          f'in {time.perf_counter() - started:.1f} s; '
          f'key id {public.key_id}')
    print(f'layout: {layout.slots} slots x (import, export), {layout.field_bits}-bit fields '
          f'({layout.max_meters} meters x {layout.max_reading_wh} Wh + {layout.guard_bits} guard bits), '
          f'{layout.fields_per_ciphertext} per ciphertext, {layout.ciphertexts} ciphertexts per meter-day')
    print(f'public key (give to meters and the aggregator): {pub_path}')
    print(f'private key (keep with the operator, mode 0600): {key_path}')
    return 0


def cmd_encrypt(args):
    from ..common.keys import load_participant_key
    from ..stats.meterdata import load_day_readings, load_feeders
    from ..stats.paillier import load_public_keys
    from ..stats.submission import encrypt_day
    keys = load_public_keys(args.pubkey)
    for path, key in zip(args.pubkey, keys, strict=True):
        if args.key_id and key.key_id not in args.key_id:
            raise InputError(path, 1, 'key_id', f'{key.key_id} is not a pinned key id (--key-id); '
                             'refusing to encrypt under a key that was not checked')
    day = args.day
    days, lines = load_day_readings(args.readings, keys[0].layout)
    feeder_map = load_feeders(args.feeders)
    for meter in days:
        if meter not in feeder_map:
            raise InputError(args.readings, lines[meter], 'participant', f'{meter} has no feeder in {args.feeders}')
    meters = sorted(days) if not args.meter else args.meter
    started = time.perf_counter()
    out = []
    for meter in meters:
        if meter not in days:
            raise InputError(args.readings, 1, 'participant', f'no readings of {meter}')
        out.append(encrypt_day(meter, day, feeder_map[meter][0], days[meter], keys,
                               load_participant_key(args.keys, meter), args.standard_randomness).to_json())
    elapsed = time.perf_counter() - started
    text = '\n'.join(out) + '\n'
    _write_file(args.out, text)
    print(f'encrypted {len(out)} meter-days of {day} under ' + ', '.join(k.name for k in keys)
          + f' in {elapsed:.2f} s ({elapsed / len(out) * 1e3:.1f} ms per meter-day, '
          f'{len(text) // len(out)} bytes each); wrote {args.out}')
    return 0


def cmd_submit(args):
    from ..stats.client import AggregatorClient
    from ..stats.submission import read_submissions
    items = read_submissions(args.submissions)
    client = AggregatorClient(args.aggregator, args.keys, args.client)
    try:
        started = time.perf_counter()
        outcomes = client.submit([s for _, s in items], args.batch)
        elapsed = time.perf_counter() - started
    finally:
        client.close()
    rejected = [f'{args.submissions}:{line}: {error}'
                for (line, _), (_, error) in zip(items, outcomes, strict=True) if error]
    _report_rejections(rejected)
    print(f'{len(items) - len(rejected)} of {len(items)} meter-days accepted by {args.aggregator} in {elapsed:.2f} s')
    return 1 if rejected else 0


def cmd_aggregate(args):
    from ..common.errors import Refused
    from ..stats import dp
    from ..stats.aggregate import Aggregator, bundle_text, empty_release_reason
    from ..stats.meterdata import load_feeders, load_participant_registry
    from ..stats.paillier import load_public_keys
    from ..stats.submission import read_submissions
    keys = load_public_keys(args.pubkey)
    day = args.day
    registry = load_participant_registry(args.registry)
    noise = None
    if args.dp_epsilon:
        try:
            noise = dp.Noise(dp.parse_epsilon(args.dp_epsilon), keys[0].layout.max_reading_wh)
        except (ValueError, ZeroDivisionError) as exc:
            raise InputError('<command line>', 0, 'dp-epsilon', str(exc)) from None
    try:
        aggregator = Aggregator(keys, registry, load_feeders(args.feeders), day, args.min_cohort)
    except ValueError as exc:
        raise InputError('<command line>', 0, 'min-cohort', str(exc)) from None
    started = time.perf_counter()
    rejected = []
    for path in args.submissions:
        for line, submission in read_submissions(path):
            try:
                aggregator.accept(submission)
            except Refused as exc:
                rejected.append(f'{path}:{line}: {exc}')
    checked = time.perf_counter()
    try:
        bundles = aggregator.release(noise)
    except ValueError as exc:
        raise InputError('<command line>', 0, 'dp-epsilon', str(exc)) from None
    done = time.perf_counter()
    _report_rejections(rejected)
    empty = empty_release_reason(bundles)
    if empty:  # a bundle of no group would only reach an operator as an empty CSV
        from ..common.errors import Refused
        raise Refused(f'day {day}: nothing to release: {empty}; no aggregates written')
    from ..market.output import write_all
    names = {k.key_id: k.name for k in keys}
    write_all(args.out, {f'{names[k]}-{day}.aggregates.json': bundle_text(b) for k, b in bundles.items()})
    print(f'{len(aggregator.accepted)} meter-days accepted, {len(rejected)} rejected; '
          f'checked in {checked - started:.2f} s, '
          f'summed in {done - checked:.2f} s')
    for key_id, bundle in bundles.items():
        refused = ', '.join(f'{r.get("feeder", r["zone"])} ({r["reason"]})' for r in bundle['refused'])
        print(f'  {names[key_id]}: {len(bundle["groups"])} {bundle["level"]} aggregates'
              + (f'; held back: {refused}' if refused else '')
              + ('' if noise is None else f'; DP noise epsilon {noise.epsilon} per field'))
    print(f'wrote {args.out}/<key>-{day}.aggregates.json (no individual ciphertext is in them)')
    return 0


def cmd_decrypt(args):
    from ..market.output import csv_text, write_all
    from ..stats.paillier import load_private
    from ..stats.release import COLUMNS, decrypt_bundle, load_traded, plot_group, totals_rows
    private = load_private(args.key)
    config = None
    if args.market:
        from ..market.config import load_config
        config = load_config(args.market)
    started = time.perf_counter()
    bundle, totals = decrypt_bundle(private, args.aggregates, args.min_cohort)
    elapsed = time.perf_counter() - started
    level, day = bundle['level'], bundle['day']
    if not totals:  # an empty CSV with exit 0 would pass for a day of statistics
        _refuse_empty_release(args.aggregates, bundle)
    traded = load_traded(args.public_results) if args.public_results else None
    files = {f'{level}s-{day}.csv': csv_text((level,) + COLUMNS,
                                             totals_rows(level, totals, _day_starts(config, args.market, day,
                                                                                    private.public.layout.slots)))}
    if not args.no_plot:
        for group in totals:
            files[f'{level}-{group.name}-{day}.png'] = plot_group(level, group, day, traded, bool(bundle.get('noise')))
    write_all(args.out, files)
    print(f'decrypted {len(totals)} {level} aggregates of {day} in {elapsed * 1e3:.0f} ms '
          f'({elapsed * 1e3 / max(1, len(totals)):.1f} ms per {level}-day)'
          + (' with DP noise' if bundle.get('noise') else '') + f'; wrote {", ".join(sorted(files))} to {args.out}')
    for refused in bundle.get('refused', []):
        group = f'feeder {refused["feeder"]}' if 'feeder' in refused else f'zone {refused["zone"]}'
        print(f'  held back by the aggregator: {group}: {refused["reason"]}')
    for refused in bundle['refused_at_decryption']:
        print(f'warning: {level} {refused["name"]} refused: {refused["reason"]}', file=sys.stderr)
    return 0


def _day_starts(config, path: str, day: str, slots: int) -> list[str]:
    """The slot_start column of a decrypted day: its slots' UTC starts by --market's time mapping ([] without).

    Raises:
        InputError: the market has no start, the day precedes it, or the day has another number of slots
            than the keys (a DST day).
    """
    if config is None:
        return []
    try:
        return day_starts(config, day, slots)
    except BadParameter as exc:
        raise InputError(path, 1, 'start', str(exc)) from None


def day_starts(config: MarketConfig, day: str, slots: int) -> list[str]:
    """The UTC starts of a meter-day's slots by a market file's time mapping (MarketConfig.day_slots).

    Args:
        config: the market (with a start).
        day: the meter-day, YYYY-MM-DD (a local calendar day in the market's timezone).
        slots: the operator keys' slots per meter-day.

    Returns:
        slot_start_text of each slot of the day, in order.

    Raises:
        BadParameter: the market has no start, the day is before it, or the day has another number of slots
            than the keys (a DST day of 92 or 100: statistics take days of the keys' slot count only).
    """
    from ..common.days import parse_day
    from ..stats.packing import DST_RULE
    delivered = config.day_slots(parse_day(day))
    if len(delivered) != slots:
        raise BadParameter('market', f'{day} has {len(delivered)} slots in the market\'s time ({config.timezone}), '
                                     f'the operator keys {slots}: {DST_RULE}')
    return [config.slot_start_text(s) for s in delivered]


def _held_back(bundle: dict) -> list[str]:
    """'feeder F1: reason' for every group the aggregator held back and the operator refused."""
    return ([f'{"feeder " + r["feeder"] if "feeder" in r else "zone " + r["zone"]}: {r["reason"]}'
             for r in bundle.get('refused', [])]
            + [f'{bundle["level"]} {r["name"]}: {r["reason"]}' for r in bundle.get('refused_at_decryption', [])])


def _refuse_empty_release(path: str, bundle: dict) -> None:
    """Raise Refused: the bundle has no group this operator may decrypt; nothing is written.

    Raises:
        Refused: always, naming the file and why each group is missing.
    """
    from ..common.errors import Refused
    reasons = _held_back(bundle)
    raise Refused(f'{path}: no {bundle["level"]} aggregate of {bundle["day"]} to decrypt'
                  + (f' ({"; ".join(reasons[:5])}{"; ..." if len(reasons) > 5 else ""})' if reasons
                     else f' ({bundle.get("submitted", "no")} meter-days in the release)')
                  + '; nothing written')


def cmd_aggregator(args):
    from ..stats.service import load_aggregator_config, serve
    from .daemon import start_daemon
    return serve(start_daemon(args, load_aggregator_config(args.config)))


def cmd_fetch(args):
    from ..stats.client import AggregatorClient
    from ..stats.paillier import load_public
    key = load_public(args.pubkey)
    day = args.day
    client = AggregatorClient(args.aggregator, args.keys, args.client or key.name)
    try:
        text = client.fetch(day, key.key_id)
    finally:
        client.close()
    path = os.path.join(args.out, f'{key.name}-{day}.aggregates.json')
    _write_file(path, text)
    print(f'fetched the {key.level} aggregates of {day} under {key.name}; wrote {path}')
    return 0


MAX_BITS = 8192  # a larger key takes many minutes to generate and every meter-day as long to encrypt

EXAMPLES = {
    'keygen': 'mpc-market stats keygen --out dso --name dso --level feeder',
    'encrypt': 'mpc-market stats encrypt --readings community/readings.csv --day 2026-11-20 --feeders '
               'community/feeders.csv --pubkey dso/dso.pub.json --key-id KEY_ID --keys keys --out days.jsonl',
    'submit': 'mpc-market stats submit --submissions days.jsonl --aggregator 127.0.0.1:7400 --keys keys',
    'aggregate': 'mpc-market stats aggregate --submissions days.jsonl --feeders community/feeders.csv --registry '
                 'keys/registry.json --pubkey dso/dso.pub.json --day 2026-11-20 --out aggregates',
    'decrypt': 'mpc-market stats decrypt --key dso/dso.key.json --aggregates aggregates/dso-2026-11-20.aggregates.json '
               '--out dso-report',
    'aggregator': 'mpc-market stats aggregator --config parties/aggregator.toml',
    'fetch': 'mpc-market stats fetch --aggregator 127.0.0.1:7400 --keys keys --pubkey dso/dso.pub.json '
             '--day 2026-11-20 --out aggregates',
}


DESCRIPTIONS = {
    'keygen': "At an operator (DSO or TSO): generate a Paillier key pair whose public key carries the packing "
              "layout (slots, field width, meters per group). Give NAME.pub.json and its key id to meters and the "
              "aggregator; NAME.key.json (mode 0600) never leaves the operator.",
    'encrypt': "At a meter or its representative: encrypt one day of readings under each operator's public key "
               "(packed, a few ciphertexts per meter-day) and sign each meter-day with the participant's key. "
               "Pin the operators' key ids with --key-id.",
    'submit': "Send the signed encrypted meter-days of `stats encrypt` to the aggregator over mutual TLS. Each "
              "meter-day is accepted or refused with its reason; exit 1 if any was refused.",
    'aggregate': "Offline aggregator: check every submitted meter-day (signature, feeder, day, ciphertexts) and "
                 "multiply the ciphertexts per feeder (DSO keys) or zone (TSO keys), releasing only groups of at "
                 "least --min-cohort meters. Writes nothing and exits 1 if no feeder has that many.",
    'decrypt': "At an operator: decrypt an aggregates bundle with the private key into a CSV of import, export "
               "and net Wh per group and slot, plus one PNG per group. Groups below --min-cohort or with "
               "out-of-range totals are refused; a bundle with nothing to decrypt exits 1 and writes nothing.",
    'aggregator': "Run the statistics aggregator as a gRPC service (mutual TLS) configured by AGGREGATOR.toml: "
                  "meters submit, operators fetch a day's aggregates once the day ended, release_delay_h passed "
                  "and the quorum (min_meters) is met; the first release is frozen.",
    'fetch': "At an operator: fetch a day's aggregates under its public key from the aggregator, with a client "
             "certificate named like the key. A day below the aggregator's quorum is refused and stays open.",
}


def _fill(text: str) -> str:
    """text wrapped to 79 columns: the formatter keeps descriptions as written (for the examples)."""
    return textwrap.fill(text, 79, break_on_hyphens=False)


def add_parsers(sub, formatter):
    from ..common.limits import ROUND_SLOTS
    from .daemon import add_daemon_options
    from .options import MAX_BATCH, bounded_int, day_text
    stats = sub.add_parser('stats', help='grid-operator statistics: Paillier-encrypted meter data, per-feeder and '
                           'per-zone aggregates', formatter_class=formatter,
                           description=_fill(
                               'Meters encrypt their day under each operator\'s Paillier key; an aggregator holding '
                               'public keys only sums them per feeder (DSO) or zone (TSO); each operator decrypts '
                               'totals of at least min_cohort meters. See docs/grid-statistics.md.')
                           ).add_subparsers(dest='stats_command', required=True,
                                                                                  metavar='STEP')

    def step(name, help_text):
        return stats.add_parser(name, help=help_text, formatter_class=formatter,
                                description=_fill(DESCRIPTIONS[name]),
                                epilog='example:\n  ' + EXAMPLES[name])

    p = step('keygen', "an operator's Paillier key pair and packing layout")
    p.add_argument('--out', required=True, help='directory for NAME.pub.json and NAME.key.json')
    p.add_argument('--name', default='dso', help='operator name; also its TLS client name at the aggregator')
    p.add_argument('--level', choices=('feeder', 'zone'), default='feeder',
                   help='feeder: a DSO key (per-feeder sums); zone: a TSO key (per-zone sums)')
    p.add_argument('--bits', type=bounded_int(1, MAX_BITS), default=2048,
                   help=f'modulus bits, 2048..{MAX_BITS} (3072 for long-term secrecy)')
    p.add_argument('--slots', type=bounded_int(1, ROUND_SLOTS), default=96,
                   help='15-minute slots per meter-day; every meter-day has exactly this many (a DST day of 92 or '
                   '100 in a market\'s timezone is refused: docs/grid-statistics.md)')
    p.add_argument('--max-reading-wh', type=bounded_int(1, 1 << 32), default=65535,
                   help='per meter, slot and direction')
    p.add_argument('--max-meters', type=bounded_int(2, 1 << 32), default=1_000_000,
                   help='largest group that must sum without carries')
    p.add_argument('--guard-bits', type=bounded_int(0, 64), default=4, help='spare bits per field (room for DP noise)')
    p.set_defaults(func=cmd_keygen)

    p = step('encrypt', 'meter side: encrypt and sign a day of readings (packed)')
    p.add_argument('--readings', required=True, help='CSV participant,slot,import_wh,export_wh (or net_wh)')
    p.add_argument('--day', required=True, type=day_text, help='YYYY-MM-DD')
    p.add_argument('--feeders', required=True, help='CSV participant,feeder,zone')
    p.add_argument('--pubkey', action='append', required=True, help='operator public key; repeat (DSO, TSO)')
    p.add_argument('--keys', required=True, help='key directory with participants/<id>.key')
    p.add_argument('--key-id', action='append', help='pin: encrypt only under public keys with these ids, as '
                   'announced by the operators out of band; repeat')
    p.add_argument('--meter', action='append', help='only this meter; repeat (default: every meter in the file)')
    p.add_argument('--out', required=True, help='JSON-lines file of signed encrypted meter-days')
    p.add_argument('--standard-randomness', action='store_true', help="phe's r^n randomness (DCR only; ~9x slower)")
    p.set_defaults(func=cmd_encrypt)

    p = step('submit', 'send encrypted meter-days to the aggregator (gRPC, mutual TLS)')
    p.add_argument('--submissions', required=True, help='JSON-lines file from stats encrypt')
    p.add_argument('--aggregator', required=True, help='host:port')
    p.add_argument('--keys', required=True, help='key directory (CA, client certificate)')
    p.add_argument('--client', default='submitter', help='client certificate name in KEYS/clients')
    p.add_argument('--batch', type=bounded_int(1, MAX_BATCH), default=MAX_BATCH,
                   help=f'meter-days per request, 1..{MAX_BATCH}')
    p.set_defaults(func=cmd_submit)

    p = step('aggregate', 'aggregator: check submissions, sum per feeder / zone (offline)')
    p.add_argument('--submissions', action='append', required=True, help='JSON-lines file; repeat')
    p.add_argument('--feeders', required=True, help='CSV participant,feeder,zone')
    p.add_argument('--registry', required=True, help='participant registry.json (signature keys)')
    p.add_argument('--pubkey', action='append', required=True, help='operator public key; repeat')
    p.add_argument('--day', required=True, type=day_text, help='YYYY-MM-DD')
    p.add_argument('--min-cohort', type=bounded_int(2, 1 << 32), default=5, help='smallest group released (>= 2)')
    p.add_argument('--dp-epsilon', help='add discrete Laplace noise, epsilon per released field (e.g. 0.5)')
    p.add_argument('--out', required=True, help='directory for <key>-<day>.aggregates.json')
    p.set_defaults(func=cmd_aggregate)

    p = step('decrypt', 'operator: decrypt aggregates to CSV and one PNG per feeder / zone')
    p.add_argument('--key', required=True, help="the operator's NAME.key.json")
    p.add_argument('--aggregates', required=True, help='aggregates JSON from the aggregator')
    p.add_argument('--public-results', help="the market's public.csv: plot its traded volume")
    p.add_argument('--market', help='the market file: its start and timezone time-stamp the slots (slot_start in '
                   'UTC; the day is a local calendar day of its timezone)')
    p.add_argument('--min-cohort', type=bounded_int(2, 1 << 32), default=5,
                   help='refuse to decrypt any group of fewer meters (>= 2)')
    p.add_argument('--no-plot', action='store_true', help='write the CSV only')
    p.add_argument('--out', required=True, help='directory for the CSV and the PNGs')
    p.set_defaults(func=cmd_decrypt)

    p = step('aggregator', 'run the statistics aggregator (gRPC server)')
    p.add_argument('--config', required=True, help='AGGREGATOR.toml')
    add_daemon_options(p, 'metrics')
    p.set_defaults(func=cmd_aggregator)

    p = step('fetch', "operator: fetch a day's aggregates under its key from the aggregator")
    p.add_argument('--aggregator', required=True, help='host:port')
    p.add_argument('--keys', required=True, help='key directory (CA, the operator client certificate)')
    p.add_argument('--client', help='client certificate name (default: the key name)')
    p.add_argument('--pubkey', required=True, help="the operator's public key")
    p.add_argument('--day', required=True, type=day_text, help='YYYY-MM-DD')
    p.add_argument('--out', required=True, help='directory for the aggregates JSON')
    p.set_defaults(func=cmd_fetch)
