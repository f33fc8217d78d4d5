"""Result files: public.csv, participants.csv and summary.json, written all-or-nothing.

Prices are in the market's currency per kWh and amounts in its currency, both exact decimals and
signed (a negative price; an amount < 0 is paid to the participant); the CSV headers are bare
column names and summary.json's "units" names the currency. Every per-slot row carries
``slot_start`` beside ``slot``: the slot's start in ISO 8601 UTC (``2026-06-17T10:15:00Z``), empty
when the market file gives no ``start``.
"""

import csv
import dataclasses
import datetime
import hashlib
import io
import json
import os
import platform
import stat
import tempfile
from dataclasses import dataclass

# slot_start: the slot's ISO 8601 UTC start (MarketConfig.slot_start_text; '' when the market has no start)
PUBLIC_COLUMNS = ('slot', 'slot_start', 'price', 'traded_wh', 'residual_wh')
PARTICIPANT_COLUMNS = ('participant', 'slot', 'slot_start', 'side', 'energy_wh', 'matched_wh', 'unmatched_wh', 'amount',
                       'status')


SCHEME_PUBLIC_COLUMNS = ('slot', 'slot_start', 'buy_price', 'sell_price')
# zoned: per slot one row per zone ('zone:NAME'), the cross-zone auction ('cross') and the network
# operator's income from the fees on cross-zone energy ('network-operator', fee_amount)
ZONED_PUBLIC_COLUMNS = ('slot', 'slot_start', 'market', 'price', 'traded_wh', 'residual_wh', 'fee_amount')
ZONED_COLUMNS = ('zone', 'local_wh', 'cross_wh')


def public_columns(config):
    if config.zoned:
        return ZONED_PUBLIC_COLUMNS
    return PUBLIC_COLUMNS if config.mechanism == 'double-auction' else SCHEME_PUBLIC_COLUMNS


def participant_columns(config, columns=None):
    columns = columns or PARTICIPANT_COLUMNS
    return columns + ZONED_COLUMNS if config.zoned else columns


def _market_row(config, slot, market, row):
    return {'slot': slot, 'slot_start': config.slot_start_text(slot), 'market': market,
            'price': '' if row.price_units is None else config.format_price(row.price_units),
            'traded_wh': row.traded_wh, 'residual_wh': row.residual_wh, 'fee_amount': ''}


@dataclass(frozen=True)
class Volumes:
    """What a clearing traded, in Wh, as its mechanism defines it (for the printed summary and summary.json).

    Double auction: ``local_wh`` is the market's volume (public.csv ``traded_wh``, every zone's plus
    the cross-zone auction's), ``residual_wh`` the part of it the retailer fills at the clearing
    price. Community schemes: every order trades in full at its slot's prices; ``local_wh`` is what
    is matched within the community, min(supply, demand) per slot, and the shortfall or surplus is
    the grid's. ``retailer_sells_wh`` / ``retailer_buys_wh``: what participants import from / export
    to the retailer besides that (unmatched orders, a scheme's shortfall / surplus, excluded orders).
    """
    mechanism: str
    trading_slots: int        # slots with local_wh > 0
    local_wh: int
    cross_wh: int             # zoned: the part of local_wh traded across zones
    residual_wh: int
    retailer_sells_wh: int
    retailer_buys_wh: int
    fee_amount: int           # zoned: network fees, money units


def volumes(config, result) -> Volumes:
    """The Volumes of a ClearingResult.

    Args:
        config: the market's MarketConfig.
        result: a ClearingResult (plaintext or MPC: both carry the same public slots and rows).

    Returns:
        Volumes computed from the public slots and the order rows, so they equal what public.csv
        and participants.csv say.
    """
    unmatched = {'buy': 0, 'sell': 0}
    for r in result.rows:
        unmatched[r.side] += r.unmatched_wh
    if config.mechanism != 'double-auction':
        supply: dict[int, int] = {}  # slot -> cleared Wh
        demand: dict[int, int] = {}
        for r in result.rows:
            if r.status == 'cleared':
                side = supply if r.side == 'sell' else demand
                side[r.slot] = side.get(r.slot, 0) + r.energy_wh
        slots = sorted(set(supply) | set(demand))
        local = {s: min(supply.get(s, 0), demand.get(s, 0)) for s in slots}
        return Volumes(config.mechanism, sum(1 for v in local.values() if v), sum(local.values()), 0, 0,
                       unmatched['buy'] + sum(max(demand.get(s, 0) - supply.get(s, 0), 0) for s in slots),
                       unmatched['sell'] + sum(max(supply.get(s, 0) - demand.get(s, 0), 0) for s in slots), 0)
    markets = lambda s: [s, *(s.zones or ())]  # noqa: E731 - one market, or every zone and the cross auction
    traded = [sum(m.traded_wh for m in markets(s)) for s in result.slots]
    return Volumes(config.mechanism, sum(1 for t in traded if t), sum(traded),
                   sum(s.traded_wh for s in result.slots) if config.zoned else 0,
                   sum(m.residual_wh for s in result.slots for m in markets(s)),
                   unmatched['buy'], unmatched['sell'], sum(s.fee_amount for s in result.slots))


def public_table(config, result):
    if config.mechanism != 'double-auction':
        return [{'slot': s.slot, 'slot_start': config.slot_start_text(s.slot),
                 'buy_price': config.format_price(s.buy_price_units),
                 'sell_price': config.format_price(s.sell_price_units)} for s in result.slots]
    if config.zoned:
        rows = []
        for s in result.slots:
            rows += [_market_row(config, s.slot, f'zone:{z.zone}', z) for z in s.zones]
            rows.append(_market_row(config, s.slot, 'cross', s))
            rows.append({'slot': s.slot, 'slot_start': config.slot_start_text(s.slot), 'market': 'network-operator',
                         'price': config.format_price(config.fee_units),
                         'traded_wh': s.traded_wh, 'residual_wh': '', 'fee_amount': config.format_amount(s.fee_amount)})
        return rows
    return [{'slot': s.slot, 'slot_start': config.slot_start_text(s.slot),
             'price': '' if s.price_units is None else config.format_price(s.price_units),
             'traded_wh': s.traded_wh, 'residual_wh': s.residual_wh} for s in result.slots]


def participant_table(config, result):
    return [{'participant': r.participant, 'slot': r.slot, 'slot_start': config.slot_start_text(r.slot),
             'side': r.side, 'energy_wh': r.energy_wh,
             'matched_wh': r.matched_wh, 'unmatched_wh': r.unmatched_wh,
             'amount': config.format_amount(r.amount), 'status': r.status,
             **({'zone': r.zone, 'local_wh': r.local_wh, 'cross_wh': r.cross_wh} if config.zoned else {})}
            for r in result.rows]


def csv_text(columns, rows):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator='\n')
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@dataclass(frozen=True)
class InputFile:
    """One input of a run, as it was read: enough to check that a rerun uses the same file."""
    role: str        # 'market', 'orders' or 'readings'
    path: str        # as given on the command line
    sha256: str      # hex digest of the file's bytes; '' for a pipe (it can be read once only: not hashed)
    bytes: int


@dataclass(frozen=True)
class Provenance:
    """What produced a summary.json: product, inputs, market, engine and parties, to reproduce a run.

    Clearing and settlement are deterministic in the inputs and the market: the sharing randomness
    (fresh OS randomness per run) never changes a result, so the files' hashes, the market's
    parameters and the options below reproduce every figure; a peers-mode committee is the
    lottery's, whose seed and transcript are in ``stats``."""
    product: str            # 'mpc-market'
    version: str            # the installed package's version
    command: str            # 'clear' or 'settle'
    created: str            # ISO 8601 UTC
    mechanism: str          # the effective one (--mechanism or the market file's)
    market: dict            # the parsed market parameters (decimals as strings)
    inputs: tuple           # InputFile of the market, orders[, readings]
    engine: str             # 'mpc' or 'plain'
    mode: str               # 'local' or 'peers'
    nodes: int              # market nodes that computed (0: the plaintext reference)
    parties: dict           # participants, orders, slots, zones
    seeds: dict             # the committee lottery's seed (peers mode), else none
    options: dict           # the command's options as given
    libraries: dict         # python, mpyc, numpy versions


def hash_input(role: str, path: str) -> InputFile:
    """The InputFile of path (its SHA-256 over the bytes now on disk; a pipe is not hashed).

    Raises:
        OSError: the file cannot be read.
    """
    if not stat.S_ISREG(os.stat(path).st_mode):  # `--orders <(...)` or /dev/stdin: the run reads it once
        return InputFile(role, os.fspath(path), '', 0)
    digest, size = hashlib.sha256(), 0
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
            size += len(block)
    return InputFile(role, os.fspath(path), digest.hexdigest(), size)


def market_parameters(config) -> dict:
    """The parsed parameters of a MarketConfig, JSON-ready (decimals as exact strings)."""
    return {'price_floor': str(config.price_floor), 'price_ceiling': str(config.price_ceiling),
            'tick': str(config.tick), 'max_order_wh': config.max_order_wh, 'max_reading_wh': config.max_reading_wh,
            'mechanism': config.mechanism, 'zoned': config.zoned, 'network_fee': str(config.network_fee),
            'zones': {zone: sorted(p for p, z in config.zone_map if z == zone) for zone in config.zone_names},
            'currency': config.currency, 'start': config.slot_start_text(0), 'slot_minutes': config.slot_minutes,
            'timezone': config.timezone}


def make_provenance(command: str, options: dict, inputs: list, book, stats: dict) -> Provenance:
    """The Provenance of a clear or settle run.

    Args:
        command: 'clear' or 'settle'.
        options: the command's options (argparse's namespace as a dict, without its function).
        inputs: InputFile of every file read (market, orders, readings).
        book: the Book that was cleared (its config is the effective market).
        stats: the result's stats (engine, nodes, committee).

    Returns:
        The Provenance.
    """
    from importlib import metadata

    def version(package):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return ''
    config = book.config
    committee = stats.get('committee') or {}
    return Provenance(
        product='mpc-market', version=version('mpc_market'), command=command,
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds').replace('+00:00', 'Z'),
        mechanism=config.mechanism, market=market_parameters(config), inputs=tuple(inputs),
        engine=stats.get('engine', ''), mode=options.get('mode', 'local'),
        nodes=stats.get('nodes', 0) if stats.get('engine') == 'mpc' else 0,
        parties={'participants': len(book.participants), 'orders': len(book.orders), 'slots': len(book.slots),
                 'zones': {z: sum(1 for p in book.participants if book.zone_of.get(p) == z) for z in book.zones}},
        seeds={'committee_lottery': committee.get('seed')} if committee else {},
        options={k: v for k, v in sorted(options.items()) if k != 'func'},
        libraries={'python': platform.python_version(), 'mpyc': version('mpyc'), 'numpy': version('numpy')})


def units(config) -> dict[str, str]:
    """What the result files' numbers are in: summary.json's "units" (the CSV headers stay bare names).

    Args:
        config: the market's MarketConfig.

    Returns:
        {'currency': ISO 4217 code, 'price': '<code>/kWh' (price columns), 'amount': '<code>' (amount
        columns, signed: > 0 the participant pays, < 0 it is paid), 'energy': 'Wh' (the _wh columns)}.
    """
    return {'currency': config.currency, 'price': f'{config.currency}/kWh', 'amount': config.currency,
            'energy': 'Wh'}


def summary_text(excluded: list, stats: dict, provenance: Provenance | None = None,
                 traded: Volumes | None = None, unit: dict | None = None) -> str:
    """summary.json: the one encoder of provenance, units, volumes, excluded participants and engine stats.

    Args:
        excluded: participants whose packages failed validation.
        stats: the engine's timings, sizes and (peers mode) committee transcript.
        provenance: what produced the run (written when given).
        traded: the run's Volumes (written when given).
        unit: the result files' units (output.units; written when given).

    Returns:
        The JSON text (dataclasses as objects, anything else non-JSON as its str).
    """
    document: dict[str, object] = {}
    if unit is not None:
        document['units'] = unit
    if provenance is not None:
        document['provenance'] = dataclasses.asdict(provenance)
    if traded is not None:
        document['volumes'] = dataclasses.asdict(traded)
    document.update(excluded=excluded, stats=stats)
    return json.dumps(document, indent=1, default=str) + '\n'


def feeder_files(config, positions):
    """{'feeder_positions.csv': ...} of a clearing's released per-zone positions when the market
    releases them (feeder_min_cohort), else {}."""
    from .feeders import FEEDER_COLUMNS, feeder_rows
    if not config.feeder_min_cohort:
        return {}
    return {'feeder_positions.csv': csv_text(FEEDER_COLUMNS, feeder_rows(config, positions))}


def write_results(out_dir, config, result, provenance: Provenance | None = None):
    """Write public.csv, participants.csv and summary.json (and feeder_positions.csv); all appear
    together or none."""
    return write_all(out_dir, {
        'public.csv': csv_text(public_columns(config), public_table(config, result)),
        'participants.csv': csv_text(participant_columns(config), participant_table(config, result)),
        'summary.json': summary_text(result.excluded, result.stats, provenance, volumes(config, result),
                                     units(config)),
        **feeder_files(config, result.feeders),
    })


def write_all(out_dir, files):
    """Write every file (text or bytes) to a temporary name, then rename them all: none or all appear.

    The files are 0600 whatever the umask (participants' rows and bills are private), and each
    temporary name is created exclusively (mkstemp), so a planted file or symlink is never written
    through."""
    os.makedirs(out_dir, exist_ok=True)
    temps = []
    try:
        for name, text in files.items():
            fd, tmp = tempfile.mkstemp(prefix=f'.{name}.', suffix='.tmp', dir=out_dir)
            temps.append((tmp, os.path.join(out_dir, name)))
            with os.fdopen(fd, 'wb') as f:
                f.write(text.encode() if isinstance(text, str) else text)
    except BaseException:
        for tmp, _ in temps:
            os.unlink(tmp)
        raise
    for tmp, final in temps:
        os.replace(tmp, final)
    return [final for _, final in temps]


SETTLEMENT_COLUMNS = PARTICIPANT_COLUMNS + ('net_wh', 'deviation_wh', 'deviation_amount', 'total_amount')
BILL_COLUMNS = ('participant', 'trade_amount', 'deviation_amount', 'total_amount', 'retailer_only_amount', 'saving')
RETAILER_COLUMNS = ('slot', 'slot_start', 'receives', 'pays', 'rounding_residue', 'net')


def write_settlement(out_dir, config, result, provenance: Provenance | None = None):
    """public.csv, participants.csv, bills.csv and retailer.csv, all-or-nothing."""
    money = config.format_amount
    columns = participant_columns(config, SETTLEMENT_COLUMNS)
    rows = [{**{k: getattr(r, k) for k in columns if k != 'slot_start'}, 'slot_start': config.slot_start_text(r.slot),
             'amount': money(r.amount), 'deviation_amount': money(r.deviation_amount),
             'total_amount': money(r.total_amount)} for r in result.rows]
    bills = [{'participant': b.participant, 'trade_amount': money(b.trade_amount),
              'deviation_amount': money(b.deviation_amount), 'total_amount': money(b.total_amount),
              'retailer_only_amount': money(b.retailer_only_amount), 'saving': money(b.saving)}
             for b in result.bills]
    retailer = [{'slot': slot, 'slot_start': config.slot_start_text(slot), 'receives': money(s.retailer_receives),
                 'pays': money(s.retailer_pays),
                 'rounding_residue': money(s.residue), 'net': money(s.retailer_net)}
                for slot, s in sorted(result.slots.items())]
    return write_all(out_dir, {
        'public.csv': csv_text(public_columns(config), public_table(config, result.clearing)),
        'participants.csv': csv_text(columns, rows),
        'bills.csv': csv_text(BILL_COLUMNS, bills),
        'retailer.csv': csv_text(RETAILER_COLUMNS, retailer),
        'summary.json': summary_text(result.clearing.excluded, result.stats, provenance,
                                     volumes(config, result.clearing), units(config)),
        **feeder_files(config, result.clearing.feeders),
    })
