"""``mpc-market stats aggregator --config AGGREGATOR.toml``: the statistics aggregator over gRPC.

Meters (or their representatives) submit signed, encrypted meter-days over mutual TLS; every
accepted day is committed to SQLite before it is acknowledged. An operator fetches a day's
aggregates under its key with a TLS client certificate named like the key. The first fetch of a
day that meets the quorum freezes it: the aggregates of every key are computed once from the same
set of meters and stored, later submissions for that day are refused, and later fetches return
the stored bundle. A fetch below the quorum (fewer than ``min_meters`` meter-days, or no feeder
of ``min_cohort`` meters) is refused and freezes nothing: one early fetch must not lose the day.
Days that have not begun (after tomorrow, UTC) are refused as well, and a day is released only
once it has ended plus ``release_delay_h``, so an early fetch cannot freeze half a day.
Otherwise two releases that differ by one late meter would hand the operator that meter's day.

AGGREGATOR.toml::

    [aggregator]
    listen = "127.0.0.1:7400"
    data_dir = "aggregator"            # aggregator.db (relative to this file)
    keys = "keys"                      # ca/ca.pem, aggregator/aggregator.{key,pem}, registry.json
    feeders = "feeders.csv"            # participant,feeder,zone
    public_keys = ["dso.pub.json", "tso.pub.json"]
    min_cohort = 5
    min_meters = 5                     # optional (default: min_cohort): quorum of meter-days to release a day
    release_delay_h = 2                # a day is released no earlier than this long after it ended (UTC)
    dp_epsilon = "0.5"                 # optional: discrete Laplace noise per released field
    metrics = "127.0.0.1:9302"         # optional: Prometheus GET /metrics (plain HTTP) on this address only
"""

import datetime
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..common.errors import InputError, Malformed, NotFound, NotPermitted, Refused, Replayed, WrongPhase
from ..common.files import make_private_dir
from ..common.textinput import refuse_unknown_keys, toml_key_line
from ..net import config, metrics, tls
from ..net.admission import Admission
from ..net.server import abort, check_free, run_server, status_of
from ..net.store import SqliteStore, now_ms
from ..rpc import market_pb2, market_pb2_grpc
from . import dp
from .aggregate import DEFAULT_MIN_COHORT, Aggregator, Bundle, FeederMap, bundle_text, empty_release_reason
from .meterdata import load_feeders, load_participant_registry
from .paillier import PublicKey, load_public_keys
from .submission import EncryptedDay, parse_day

log = logging.getLogger('mpc_market.stats')
WORKERS = 8
RESERVED_WORKERS = 2  # never taken by submissions: operators' fetches and health checks always answer

SCHEMA = """
CREATE TABLE IF NOT EXISTS days (
    day TEXT NOT NULL, meter TEXT NOT NULL, body BLOB NOT NULL, accepted_ms INTEGER NOT NULL,
    PRIMARY KEY (day, meter));
CREATE TABLE IF NOT EXISTS releases (
    day TEXT NOT NULL, key_id TEXT NOT NULL, bundle TEXT NOT NULL, released_ms INTEGER NOT NULL,
    PRIMARY KEY (day, key_id));
"""


@dataclass
class AggregatorConfig:
    path: str
    listen: str
    data_dir: str
    keys: str
    feeders: str
    public_keys: list[str]
    min_cohort: int = DEFAULT_MIN_COHORT
    dp_epsilon: Fraction | None = None
    release_delay_h: float = 0.0
    metrics: str = ''                 # "host:port" of GET /metrics; '' = none
    min_meters: int = DEFAULT_MIN_COHORT  # quorum: fewer accepted meter-days and a fetch releases nothing


AGGREGATOR_KEYS = ('listen', 'data_dir', 'keys', 'feeders', 'public_keys', 'min_cohort', 'min_meters',
                   'release_delay_h', 'dp_epsilon', 'metrics')


def load_aggregator_config(path: str) -> AggregatorConfig:
    """The [aggregator] table of AGGREGATOR.toml.

    Args:
        path: the TOML file; relative paths in it are relative to its directory.

    Returns:
        The checked configuration (``min_meters`` defaults to ``min_cohort``).

    Raises:
        InputError: a missing, unknown or out-of-range key, naming the file, line and key.
    """
    get, rel = config.get_value, config.relative_path
    text, table = config.load_table(path, 'aggregator')
    refuse_unknown_keys(path, text, table, AGGREGATOR_KEYS, 'aggregator')
    files = get(path, text, table, 'public_keys', list, check=lambda v: v and all(isinstance(f, str) for f in v),
                what='a non-empty list of public key files')
    epsilon = get(path, text, table, 'dp_epsilon', str, '', what='a decimal string such as "0.5"')
    try:
        epsilon = dp.parse_epsilon(epsilon) if epsilon else None
    except (ValueError, ZeroDivisionError) as exc:
        raise InputError(path, toml_key_line(text, 'dp_epsilon'), 'dp_epsilon', str(exc)) from None
    min_cohort = get(path, text, table, 'min_cohort', int, DEFAULT_MIN_COHORT, lambda v: v >= 2, 'an integer >= 2')
    return AggregatorConfig(
        path=path,
        listen=get(path, text, table, 'listen', str, check=config.ADDRESS_RE.match, what='"host:port"'),
        data_dir=rel(path, get(path, text, table, 'data_dir', str, what='a directory')),
        keys=rel(path, get(path, text, table, 'keys', str, what='a directory')),
        feeders=rel(path, get(path, text, table, 'feeders', str, what='a CSV file')),
        public_keys=[rel(path, f) for f in files],
        min_cohort=min_cohort,
        min_meters=get(path, text, table, 'min_meters', int, min_cohort, lambda v: v >= 1, 'an integer >= 1'),
        release_delay_h=float(get(path, text, table, 'release_delay_h', (int, float), 0, lambda v: v >= 0,
                                  'hours >= 0')),
        dp_epsilon=epsilon, metrics=config.optional_address(path, text, table, 'metrics'))


class AggregatorStore(SqliteStore):
    """Accepted meter-days and frozen releases (SQLite, WAL, synchronous=FULL)."""

    schema = SCHEMA

    def accept(self, submissions: Sequence[EncryptedDay]) -> list[Refused | None]:
        """Commit submissions (already checked); [None or Refused] per submission, in order."""
        outcomes: list[Refused | None] = []
        with self._transaction() as db:
            released = {d for d, in db.execute('SELECT DISTINCT day FROM releases')}
            for s in submissions:
                if s.day in released:
                    outcomes.append(WrongPhase(f'{s.meter}: day {s.day} was already released '
                                             'to the operators; late readings are refused'))
                    continue
                try:
                    db.execute('INSERT INTO days VALUES (?, ?, ?, ?)',
                               (s.day, s.meter, s.to_proto().SerializeToString(), now_ms()))
                    outcomes.append(None)
                except sqlite3.IntegrityError:
                    outcomes.append(Replayed(f'{s.meter} already submitted readings for {s.day}'))
        return outcomes

    def release(self, day: str, make_bundles: Callable[[list[EncryptedDay]], Mapping[str, Bundle]]) -> dict[str, str]:
        """{key_id: bundle text} of day: the stored release, or make_bundles(days) frozen now.

        make_bundles may raise (a Refused error: below the quorum); then nothing is stored and
        the day stays open for later readings."""
        with self._transaction() as db:
            stored = dict(db.execute('SELECT key_id, bundle FROM releases WHERE day = ?', (day,)))
            if stored:
                return stored
            days = [EncryptedDay.from_proto(market_pb2.EncryptedDay.FromString(body))
                    for body, in db.execute('SELECT body FROM days WHERE day = ? ORDER BY meter', (day,))]
            bundles = {k: bundle_text(b) for k, b in make_bundles(days).items()}
            db.executemany('INSERT INTO releases VALUES (?, ?, ?, ?)',
                           [(day, k, text, now_ms()) for k, text in bundles.items()])
            return bundles


class AggregatorService(market_pb2_grpc.StatsAggregatorServicer):
    def __init__(self, config: AggregatorConfig, store: AggregatorStore, public_keys: Sequence[PublicKey],
                 registry: Mapping[str, Ed25519PublicKey], feeder_map: FeederMap) -> None:
        self.config, self.store = config, store
        self.public_keys, self.registry, self.feeder_map = public_keys, registry, feeder_map
        self.admission = Admission(WORKERS, reserved=RESERVED_WORKERS)  # per client certificate, before any work
        self.noise = None if config.dp_epsilon is None else dp.Noise(config.dp_epsilon,
                                                                     public_keys[0].layout.max_reading_wh)

    def _aggregator(self, day: str) -> Aggregator:
        return Aggregator(self.public_keys, self.registry, self.feeder_map, day, self.config.min_cohort)

    def _check(self, message: market_pb2.EncryptedDay) -> EncryptedDay:
        submission = EncryptedDay.from_proto(message)
        try:
            parse_day(submission.day)
        except ValueError:
            raise Malformed(f'{submission.meter}: day {submission.day!r} is not YYYY-MM-DD') from None
        latest = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
        if datetime.date.fromisoformat(submission.day) > latest:
            raise WrongPhase(f'{submission.meter}: day {submission.day} has not begun '
                           f'(the aggregator accepts days up to {latest}, UTC)')
        self._aggregator(submission.day).check(submission)
        return submission

    def SubmitEncryptedDays(self, request: market_pb2.EncryptedDayBatch,
                            context: grpc.ServicerContext) -> market_pb2.EncryptedDayOutcomes:
        with self.admission.admit(context, len(request.days), 'aggregator'):
            return self._submit_days(request)

    def _submit_days(self, request: market_pb2.EncryptedDayBatch) -> market_pb2.EncryptedDayOutcomes:
        outcomes: list[Refused | None] = []
        checked: list[EncryptedDay] = []
        positions: list[int] = []
        for message in request.days:
            try:
                checked.append(self._check(message))
                positions.append(len(outcomes))
                outcomes.append(None)
            except Refused as exc:
                outcomes.append(exc)
        for position, outcome in zip(positions, self.store.accept(checked) if checked else [], strict=True):
            outcomes[position] = outcome
        metrics.count_submissions('meter_day', outcomes, lambda exc: status_of(exc).name)
        return market_pb2.EncryptedDayOutcomes(outcomes=[
            market_pb2.EncryptedDayOutcome(accepted=True) if o is None else
            market_pb2.EncryptedDayOutcome(error=str(o), code=status_of(o).name) for o in outcomes])

    def FetchAggregates(self, request: market_pb2.AggregatesRequest,
                        context: grpc.ServicerContext) -> market_pb2.Aggregates:
        key = next((k for k in self.public_keys if k.key_id == request.key_id), None)
        if key is None:
            abort(context, NotFound(f'no operator key {request.key_id!r} at this aggregator'), 'aggregator')
        caller = tls.client_name(context)
        if caller != key.name:
            abort(context, NotPermitted(f'aggregates under key {key.name} go to the client certificate {key.name!r} '
                                        f'only, not {caller!r}'), 'aggregator')
        try:
            parse_day(request.day)
        except ValueError:
            abort(context, Malformed(f'day {request.day!r} is not YYYY-MM-DD'), 'aggregator')
        day_end = datetime.datetime.combine(datetime.date.fromisoformat(request.day) + datetime.timedelta(days=1),
                                            datetime.time(), datetime.UTC)
        release_at = day_end + datetime.timedelta(hours=self.config.release_delay_h)
        if datetime.datetime.now(datetime.UTC) < release_at:
            abort(context, WrongPhase(f'day {request.day} is released from {release_at:%Y-%m-%d %H:%M} UTC on '
                                      '(its readings may still come in)'), 'aggregator')

        def make_bundles(days: list[EncryptedDay]) -> dict[str, Bundle]:
            _check_quorum(request.day, len(days), self.config.min_meters)
            aggregator = self._aggregator(request.day)
            for submission in days:
                aggregator.accept(submission, checked=True)
            bundles = aggregator.release(self.noise)
            _check_some_group(request.day, bundles)
            return bundles
        try:
            bundles = self.store.release(request.day, make_bundles)
        except WrongPhase as exc:  # below the quorum: nothing frozen, later readings still count
            log.info('day %s: not released to %s: %s', request.day, caller, exc)
            abort(context, exc, 'aggregator')
        except ValueError as exc:
            abort(context, WrongPhase(str(exc)), 'aggregator')
        log.info('day %s: aggregates under key %s sent to %s', request.day, key.name, caller)
        return market_pb2.Aggregates(bundle=bundles[key.key_id].encode())


NOT_FROZEN = 'nothing is frozen: later readings of the day still count and a later fetch releases them'


def _check_quorum(day: str, meters: int, min_meters: int) -> None:
    """Raise WrongPhase if fewer than min_meters meter-days of day were accepted."""
    if meters < min_meters:
        raise WrongPhase(f'day {day} is not released: {meters} meter-days received, the quorum is '
                         f'min_meters = {min_meters}; {NOT_FROZEN}')


def _check_some_group(day: str, bundles: Mapping[str, Bundle]) -> None:
    """Raise WrongPhase if no key's bundle has a group (no feeder reached min_cohort meters)."""
    reason = empty_release_reason(bundles)
    if reason:
        raise WrongPhase(f'day {day} is not released: {reason}; {NOT_FROZEN}')


def load_service_inputs(
        config: AggregatorConfig) -> tuple[list[PublicKey], dict[str, Ed25519PublicKey], dict[str, tuple[str, str]]]:
    """The files the aggregator serves with.

    Args:
        config: its configuration.

    Returns:
        (operator public keys, participant registry, feeder map).

    Raises:
        InputError: a missing or malformed file.
    """
    return (load_public_keys(config.public_keys), load_participant_registry(os.path.join(config.keys, 'registry.json')),
            load_feeders(config.feeders))


def serve(config: AggregatorConfig) -> int:
    """Run the aggregator until SIGTERM or SIGINT.

    Args:
        config: from load_aggregator_config.

    Returns:
        0 (the exit status) once stopped.

    Raises:
        InputError: a missing or malformed input file.
        OSError: the listen address is taken.
    """
    public_keys, registry, feeder_map = load_service_inputs(config)
    credentials = tls.server_credentials(config.keys, 'aggregator', 'aggregator')
    check_free('aggregator', config.listen)  # a second aggregator on the same port touches no store
    make_private_dir(config.data_dir)
    store = AggregatorStore(os.path.join(config.data_dir, 'aggregator.db'))
    metrics.set_role('aggregator')
    metrics.watch_store(store)

    def add_servicers(server: grpc.Server) -> list[str]:
        market_pb2_grpc.add_StatsAggregatorServicer_to_server(
            AggregatorService(config, store, public_keys, registry, feeder_map), server)
        return ['mpc_market.rpc.StatsAggregator']
    try:
        run_server('aggregator', config.listen, credentials, add_servicers, WORKERS,
                   f'statistics aggregator listening on {config.listen} (mutual TLS); keys '
                   + ', '.join(f'{k.name} ({k.level})' for k in public_keys) + f'; min cohort {config.min_cohort}'
                   + f'; quorum {config.min_meters} meter-days per day'
                   + ('' if config.dp_epsilon is None else f'; DP epsilon {config.dp_epsilon} per field'),
                   metrics_address=config.metrics)
    finally:
        store.close()
    return 0
