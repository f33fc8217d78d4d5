"""A node's durable state in SQLite (WAL, synchronous=FULL): rounds, accepted submissions with
their signed envelopes and receipts, used nonces, result shares and signed public results.

A submission is acknowledged only after its transaction commits, so an acknowledged order
survives a crash; a restarted node reopens the same file and resumes. Resubmitting before the
gate closes replaces the participant's package (same round, same kind); every nonce can be
used once, across all rounds (replay protection).

The rounds table and its decoded row, ``Round``, are the nodes' and the broker's
(mpc_market.net.broker.BrokerStore): one DDL, one decoder, one encoder.
"""

import dataclasses
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ..common.errors import BadParameter, NotFound, Refused, Replayed, WrongPhase
from ..common.names import check_round_id

# -- the rounds table: one for the nodes and the broker ----------------------------------------------
# (column, declaration). The first columns are in every CREATE TABLE since the first release, whose
# column order differed between node and broker (so every query names its columns); each later
# column has a default, so a file written by an older version gains it by ALTER TABLE at start.
FIRST_ROUND_COLUMNS = (
    ('round_id', 'TEXT PRIMARY KEY'), ('slots', 'TEXT NOT NULL'), ('gate_closure_ms', 'INTEGER NOT NULL'),
    ('market_toml', 'TEXT NOT NULL'), ('state', 'TEXT NOT NULL'), ('reason', "TEXT NOT NULL DEFAULT ''"),
    ('attempts', 'INTEGER NOT NULL DEFAULT 0'), ('created_ms', 'INTEGER NOT NULL'),
)
LATER_ROUND_COLUMNS = (
    ('readings_open_ms', 'INTEGER NOT NULL DEFAULT 0'),
    ('readings_deadline_ms', 'INTEGER NOT NULL DEFAULT 0'),
    ('day', "TEXT NOT NULL DEFAULT ''"),
    ('deviation_price2', "TEXT NOT NULL DEFAULT '[]'"),   # node only: from the clearing's public outputs
    ('settlement', "TEXT NOT NULL DEFAULT ''"),           # '' | settling | settled | failed
    ('settle_reason', "TEXT NOT NULL DEFAULT ''"),
    ('settle_attempts', 'INTEGER NOT NULL DEFAULT 0'),
    ('final', 'INTEGER NOT NULL DEFAULT 0'),              # the failure is deterministic: no rerun
    ('settle_final', 'INTEGER NOT NULL DEFAULT 0'),
    ('params', "TEXT NOT NULL DEFAULT ''"),               # broker only; '' (an older broker's round): clients refuse it
    ('params_signatures', "TEXT NOT NULL DEFAULT '{}'"),  # broker only
    ('flex_requests', "TEXT NOT NULL DEFAULT ''"),        # a flexibility round's public requests CSV ('': energy)
    ('energy_round', "TEXT NOT NULL DEFAULT ''"),         # a flexibility round: the energy round settling it
)
ROUNDS_DDL = ('CREATE TABLE IF NOT EXISTS rounds (\n    '
              + ',\n    '.join(f'{name} {decl}' for name, decl in FIRST_ROUND_COLUMNS + LATER_ROUND_COLUMNS)
              + ');\n')

SCHEMA = ROUNDS_DDL + """
CREATE TABLE IF NOT EXISTS submissions (
    round_id TEXT NOT NULL, participant TEXT NOT NULL, kind TEXT NOT NULL, nonce TEXT NOT NULL,
    envelope BLOB NOT NULL, signature BLOB NOT NULL, package BLOB NOT NULL,
    receipt_signature BLOB NOT NULL, accepted_ms INTEGER NOT NULL, seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (round_id, participant, kind));
CREATE TABLE IF NOT EXISTS nonces (
    participant TEXT NOT NULL, nonce TEXT NOT NULL, round_id TEXT NOT NULL,
    PRIMARY KEY (participant, nonce));
CREATE TABLE IF NOT EXISTS result_requests (
    participant TEXT NOT NULL, nonce TEXT NOT NULL, at_ms INTEGER NOT NULL,
    PRIMARY KEY (participant, nonce));
CREATE TABLE IF NOT EXISTS results (
    round_id TEXT NOT NULL, participant TEXT NOT NULL, status TEXT NOT NULL, shares BLOB NOT NULL,
    PRIMARY KEY (round_id, participant));
CREATE TABLE IF NOT EXISTS public_results (
    round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS settlement_results (
    round_id TEXT NOT NULL, participant TEXT NOT NULL, status TEXT NOT NULL, shares BLOB NOT NULL,
    PRIMARY KEY (round_id, participant));
CREATE TABLE IF NOT EXISTS delivery_results (
    round_id TEXT NOT NULL, participant TEXT NOT NULL, status TEXT NOT NULL, shares BLOB NOT NULL,
    PRIMARY KEY (round_id, participant));
CREATE TABLE IF NOT EXISTS retailer_results (
    round_id TEXT PRIMARY KEY, shares BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS settlement_public (
    round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signature BLOB NOT NULL);
"""

# columns added after the first release: (table, column, declaration); added to older stores at start
ROUND_LATER_COLUMNS = tuple(('rounds', name, declaration) for name, declaration in LATER_ROUND_COLUMNS)
LATER_COLUMNS = (
    ('submissions', 'seq', 'INTEGER NOT NULL DEFAULT 0'),
    *ROUND_LATER_COLUMNS,
)

STATES = ('open', 'closed', 'clearing', 'cleared', 'failed')
SETTLEMENT_STATES = ('', 'settling', 'settled', 'failed')  # '' = not started


def encode_signatures(signatures: Mapping[int, bytes]) -> str:
    """The stored form of per-node signatures: JSON {"node index": "hex"}.

    Args:
        signatures: node index -> signature.

    Returns:
        The JSON text.
    """
    return json.dumps({str(i): bytes(s).hex() for i, s in signatures.items()})


def decode_signatures(text: str) -> dict[int, bytes]:
    """The signatures encode_signatures stored.

    Args:
        text: the stored JSON text.

    Returns:
        node index -> signature.
    """
    return {int(i): bytes.fromhex(s) for i, s in json.loads(text).items()}


@dataclass(frozen=True)
class Round:
    """A round as a node or the broker stores it: one row of the rounds table, decoded.

    Every field is a column of that name (created_ms, the order of rounds, is not a field);
    from_row decodes a row selected as ROUND_FIELDS, to_row encodes one for INSERT.
    """

    round_id: str
    slots: tuple[int, ...]            # sorted
    gate_closure_ms: int
    market_toml: str
    state: str                        # one of STATES
    reason: str = ''
    attempts: int = 0
    readings_open_ms: int = 0
    readings_deadline_ms: int = 0     # 0: this round is not settled
    day: str = ''
    deviation_price2: tuple[int, ...] = ()  # node: per slot, from the clearing's public outputs
    settlement: str = ''              # one of SETTLEMENT_STATES
    settle_reason: str = ''
    settle_attempts: int = 0
    final: bool = False               # failed deterministically (a bad market, a bug): not retried
    settle_final: bool = False
    params: str = ''                  # broker: the RoundParams JSON every node signed ('' at a node)
    params_signatures: tuple[tuple[int, bytes], ...] = ()  # broker: (node index, signature of params)
    flex_requests: str = ''           # a flexibility round: its public requests CSV ('': an energy round)
    energy_round: str = ''            # a flexibility round: the energy round whose settlement delivers it

    @classmethod
    def opened(cls, round_id: str, slots: Iterable[int], gate_closure_ms: int, market_toml: str,
               readings_open_ms: int = 0, readings_deadline_ms: int = 0, day: str = '', params: str = '',
               params_signatures: Mapping[int, bytes] | None = None, flex_requests: str = '',
               energy_round: str = '') -> 'Round':
        """A round just opened (state open, its slots sorted).

        Args:
            round_id: the round's id.
            slots: its slots, in any order.
            gate_closure_ms, readings_open_ms, readings_deadline_ms: unix ms (0: no readings window).
            market_toml: the market's configuration text.
            day: the delivery day (YYYY-MM-DD) or ''.
            params, params_signatures: the broker's record of the parameters every node signed.
            flex_requests: a flexibility round's public requests CSV ('': an energy round).
            energy_round: a flexibility round's energy round that settles its delivery ('': none).

        Returns:
            The Round.

        Raises:
            Malformed: round_id or energy_round is not a valid name.
        """
        if energy_round:
            check_round_id(energy_round)
        return cls(check_round_id(round_id), tuple(sorted(int(s) for s in slots)), int(gate_closure_ms), market_toml,
                   'open', readings_open_ms=int(readings_open_ms), readings_deadline_ms=int(readings_deadline_ms),
                   day=day, params=params, params_signatures=tuple(sorted((params_signatures or {}).items())),
                   flex_requests=flex_requests, energy_round=energy_round)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> 'Round':
        """The one decoder of a rounds row.

        Args:
            row: the values of the columns ROUND_FIELDS, in that order.

        Returns:
            The Round.
        """
        values = dict(zip(ROUND_FIELDS, row, strict=True))
        return cls(**{**values, 'slots': tuple(json.loads(values['slots'])),
                      'deviation_price2': tuple(json.loads(values['deviation_price2'])),
                      'final': bool(values['final']), 'settle_final': bool(values['settle_final']),
                      'params_signatures': tuple(sorted(decode_signatures(values['params_signatures']).items()))})

    def to_row(self) -> tuple[object, ...]:
        """The one encoder of a rounds row (JSON for the sequences, 0/1 for the flags).

        Returns:
            The values of the columns ROUND_FIELDS, in that order.
        """
        encoded = {'slots': json.dumps(list(self.slots)),
                   'deviation_price2': json.dumps([int(v) for v in self.deviation_price2]),
                   'final': int(self.final), 'settle_final': int(self.settle_final),
                   'params_signatures': encode_signatures(dict(self.params_signatures))}
        return tuple(encoded.get(name, getattr(self, name)) for name in ROUND_FIELDS)

    @property
    def kind(self) -> str:
        """'flex' for a flexibility round, else 'energy'."""
        return 'flex' if self.flex_requests else 'energy'

    def readings_window_open(self, at_ms: int) -> bool:
        """Whether the round takes meter readings at at_ms (cleared, not settling, in its window).

        Args:
            at_ms: unix ms.

        Returns:
            True in the readings window.
        """
        return (self.state == 'cleared' and self.settlement == '' and self.readings_deadline_ms > 0
                and self.readings_open_ms <= at_ms <= self.readings_deadline_ms)


ROUND_FIELDS = tuple(f.name for f in dataclasses.fields(Round))
_ROUND_SELECT = f'SELECT {", ".join(ROUND_FIELDS)} FROM rounds '
_ROUND_INSERT = (f'INSERT OR IGNORE INTO rounds ({", ".join(ROUND_FIELDS)}, created_ms) '
                 f'VALUES ({", ".join("?" for _ in ROUND_FIELDS)}, ?)')


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(bytes(data)).digest()


def now_ms() -> int:
    """The current unix time in milliseconds."""
    return int(time.time() * 1000)


def add_later_columns(db: sqlite3.Connection, later_columns: Iterable[tuple[str, str, str]]) -> None:
    """ALTER TABLE ... ADD COLUMN for each column a store written by an older version lacks.

    Args:
        db: the open database.
        later_columns: (table, column, declaration): constants of this package, never input.
    """
    for table, column, declaration in later_columns:
        if column not in {row[1] for row in db.execute(f'PRAGMA table_info({table})')}:
            db.execute(f'ALTER TABLE {table} ADD COLUMN {column} {declaration}')


def open_database(path: str, schema: str) -> sqlite3.Connection:
    """SQLite in WAL mode with synchronous=FULL: a committed transaction survives a crash.

    Args:
        path: the database file (created if missing).
        schema: the CREATE TABLE IF NOT EXISTS script.

    Returns:
        The connection (autocommit: writes go through Transaction).
    """
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('PRAGMA synchronous=FULL')
    db.executescript(schema)
    return db


class SqliteStore:
    """The durable-state recipe of node, broker and aggregator: one SQLite file in WAL mode with
    synchronous=FULL, one lock, writes in ``BEGIN IMMEDIATE`` transactions."""

    schema = ''

    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()
        self._db = open_database(path, self.schema)

    def close(self) -> None:
        """Close the database (after the last request)."""
        with self._lock:
            self._db.close()

    def _transaction(self) -> 'Transaction':
        return Transaction(self._db, self._lock)

    def round_phase_rows(self, flex: bool = False) -> list[tuple[str, str, bool, int]]:
        """(state, settlement, has a readings deadline, rounds) of a node's or the broker's rounds
        table, for the metrics (no round id); flex: of its flexibility rounds only."""
        where = "WHERE flex_requests != '' " if flex else ''  # a constant clause
        with self._lock:
            rows = self._db.execute(
                f'SELECT state, settlement, readings_deadline_ms > 0, COUNT(*) FROM rounds {where}GROUP BY 1, 2, 3')
            return [(state, settlement, bool(deadline), count) for state, settlement, deadline, count in rows]

    # the rounds table of the node's and the broker's stores (not the aggregator's, which has none)
    def _insert_round(self, db: sqlite3.Connection, round_: Round) -> None:
        """Record a round unless one of its id exists (opening is idempotent)."""
        db.execute(_ROUND_INSERT, (*round_.to_row(), now_ms()))

    def _select_rounds(self, db: sqlite3.Connection | None, clause: str, params: Sequence[object] = ()) -> list[Round]:
        """The rounds a constant WHERE/ORDER BY clause selects (params: its values)."""
        return [Round.from_row(row) for row in (db or self._db).execute(_ROUND_SELECT + clause, params)]

    def flex_round_of(self, energy_round: str) -> Round | None:
        """The flexibility round an energy round's settlement delivers, if one was opened.

        Args:
            energy_round: the energy round's id.

        Returns:
            The flexibility round (at most one per energy round: OpenRound refuses a second), or None.
        """
        found = self._select_rounds(None, "WHERE energy_round = ? AND flex_requests != '' ORDER BY created_ms",
                                    (energy_round,))
        return found[0] if found else None


class Store(SqliteStore):
    """A market node's rounds, submissions (envelopes, share packages, receipts), nonces and results."""

    schema = SCHEMA

    def __init__(self, path: str):
        super().__init__(path)
        add_later_columns(self._db, LATER_COLUMNS)

    # -- rounds ---------------------------------------------------------------------------------
    def open_round(self, round_id: str, slots: Iterable[int], gate_closure_ms: int, market_toml: str,
                   readings_open_ms: int = 0, readings_deadline_ms: int = 0, day: str = '',
                   flex_requests: str = '', energy_round: str = '') -> Round:
        """Record an opened round; idempotent (a restarted broker may reopen it): a round of that id
        is kept as it is.

        Args:
            round_id, slots, gate_closure_ms, market_toml, readings_open_ms, readings_deadline_ms, day,
                flex_requests, energy_round: as in Round.opened.

        Returns:
            The stored round.

        Raises:
            Malformed: round_id is not a valid name.
        """
        round_ = Round.opened(round_id, slots, gate_closure_ms, market_toml, readings_open_ms, readings_deadline_ms,
                              day, flex_requests=flex_requests, energy_round=energy_round)
        with self._transaction() as db:
            self._insert_round(db, round_)
        return self.round(round_id)

    def round(self, round_id: str, db: sqlite3.Connection | None = None) -> Round:
        """A round by id.

        Args:
            round_id: its id.
            db: the connection of a transaction in progress (None: outside one).

        Returns:
            The round.

        Raises:
            NotFound: no such round.
        """
        found = self._select_rounds(db, 'WHERE round_id = ?', (round_id,))
        if not found:
            raise NotFound(f'unknown round {round_id!r}')
        return found[0]

    def set_state(self, round_id: str, state: str, reason: str = '', final: bool = False) -> None:
        """Set a round's state and reason; final marks a deterministic failure no rerun repeats.

        Args:
            round_id: the round.
            state: one of STATES.
            reason: why (a failure's reason, or '').
            final: the failure is deterministic.

        Raises:
            NotFound: no such round.
            BadParameter: state is not one of STATES (a ValueError).
        """
        if state not in STATES:
            raise BadParameter('state', f'unknown round state {state!r}')
        with self._transaction() as db:
            self.round(round_id, db)
            db.execute('UPDATE rounds SET state = ?, reason = ?, final = ? WHERE round_id = ?',
                       (state, reason, int(final), round_id))

    def begin_clearing(self, round_id: str, rerun: bool = False) -> Round | None:
        """Close the gate and mark the round clearing (again, after a failure).

        Args:
            round_id: the round.
            rerun: clear it again even if it cleared.

        Returns:
            The round now clearing; None if it is already clearing, or cleared and not rerun.

        Raises:
            NotFound: no such round.
        """
        with self._transaction() as db:
            current = self.round(round_id, db)
            if current.state == 'clearing' or (current.state == 'cleared' and not rerun):
                return None
            db.execute("UPDATE rounds SET state = 'clearing', reason = '', final = 0, attempts = attempts + 1 "
                       'WHERE round_id = ?', (round_id,))
        return self.round(round_id)

    def fail_interrupted(self, reason: str) -> None:
        """At start-up: rounds left clearing or settling by a crash are failed (the broker re-runs them).

        Args:
            reason: the failure reason recorded.
        """
        with self._transaction() as db:
            db.execute("UPDATE rounds SET state = 'failed', reason = ? WHERE state = 'clearing'", (reason,))
            db.execute("UPDATE rounds SET settlement = 'failed', settle_reason = ? WHERE settlement = 'settling'",
                       (reason,))

    def begin_settling(self, round_id: str, rerun: bool = False) -> Round | None:
        """Close the readings window (the broker decides when, as it decides the gate closure) and mark
        the round settling (again, after a failure).

        Args:
            round_id: the round.
            rerun: settle it again even if it settled.

        Returns:
            The round now settling; None if it is settling, or settled and not rerun.

        Raises:
            NotFound: no such round.
            WrongPhase: the round has not cleared, or has no settlement.
        """
        with self._transaction() as db:
            current = self.round(round_id, db)
            if current.state != 'cleared' or not current.readings_deadline_ms:
                raise WrongPhase(f'round {round_id} is {current.state}'
                                 + ('' if current.readings_deadline_ms else ' and has no settlement'))
            if current.settlement == 'settling' or (current.settlement == 'settled' and not rerun):
                return None
            db.execute("UPDATE rounds SET settlement = 'settling', settle_reason = '', settle_final = 0, "
                       'settle_attempts = settle_attempts + 1 WHERE round_id = ?', (round_id,))
        return self.round(round_id)

    def set_settlement(self, round_id: str, settlement: str, reason: str = '', final: bool = False) -> None:
        """Set a round's settlement state and reason; final as in set_state.

        Args:
            round_id: the round.
            settlement: one of SETTLEMENT_STATES.
            reason: why (a failure's reason, or '').
            final: the failure is deterministic.

        Raises:
            NotFound: no such round.
            BadParameter: settlement is not one of SETTLEMENT_STATES (a ValueError).
        """
        if settlement not in SETTLEMENT_STATES:
            raise BadParameter('settlement', f'unknown settlement state {settlement!r}')
        with self._transaction() as db:
            self.round(round_id, db)
            db.execute('UPDATE rounds SET settlement = ?, settle_reason = ?, settle_final = ? WHERE round_id = ?',
                       (settlement, reason, int(final), round_id))

    # -- submissions ----------------------------------------------------------------------------
    def accept(self, round_id: str, participant: str, kind: str, nonce: str, envelope: bytes, signature: bytes,
               package: bytes, receipt_signature: bytes, at_ms: int | None = None, seq: int = 0) -> int:
        """Store a checked submission atomically; replaces an earlier one of the same kind.

        Args:
            round_id, participant, kind, nonce, envelope, signature, package, receipt_signature, seq:
                the checked submission (as in accept_many).
            at_ms: when it was accepted (None: now).

        Returns:
            at_ms.

        Raises:
            Refused: accept_many's refusal of it (NotFound, WrongPhase, Replayed).
        """
        at_ms = now_ms() if at_ms is None else at_ms
        error = self.accept_many([(round_id, participant, kind, nonce, envelope, signature, package,
                                   receipt_signature, seq)], at_ms)[0]
        if error is not None:
            raise error
        return at_ms

    def accept_many(self, items: Iterable[tuple[str, str, str, str, bytes, bytes, bytes, bytes, int]],
                    at_ms: int | None = None) -> list[Refused | None]:
        """Store checked submissions in one commit (one fsync).

        Of two envelopes of one participant the higher (seq, SHA-256 of the envelope) is kept, in
        whatever order they arrive, so every node that sees both keeps the same one.

        Args:
            items: (round_id, participant, kind, nonce, envelope, signature, package, receipt_signature, seq).
            at_ms: when they were accepted (None: now).

        Returns:
            Per item None (stored) or the Refused error why not.
        """
        at_ms = now_ms() if at_ms is None else at_ms
        errors: list[Refused | None] = []
        with self._transaction() as db:
            rounds: dict[str, Round | Refused] = {}
            for round_id, participant, kind, nonce, envelope, signature, package, receipt_signature, seq in items:
                if round_id not in rounds:
                    try:
                        rounds[round_id] = self.round(round_id, db)
                    except Refused as exc:
                        rounds[round_id] = exc
                current = rounds[round_id]
                if isinstance(current, Refused):
                    errors.append(current)
                    continue
                if kind == 'readings' and not current.readings_window_open(at_ms):
                    errors.append(WrongPhase(_readings_refusal(current, at_ms)))
                    continue
                if kind != 'readings' and (current.state != 'open' or at_ms > current.gate_closure_ms):
                    errors.append(WrongPhase(f'round {round_id} is closed for submissions (gate closure passed)'))
                    continue
                held = db.execute('SELECT seq, envelope FROM submissions WHERE round_id = ? AND participant = ? '
                                  'AND kind = ?', (round_id, participant, kind)).fetchone()
                if held is not None and (held[0], _sha256(held[1])) > (seq, _sha256(envelope)):
                    errors.append(Replayed(f'superseded: this node already holds a later envelope of {participant} '
                                           f'(sequence number {held[0]} > {seq})'))
                    continue
                try:
                    db.execute('INSERT INTO nonces VALUES (?, ?, ?)', (participant, nonce, round_id))
                except sqlite3.IntegrityError:
                    errors.append(Replayed(f'replayed envelope (nonce {nonce} already used by {participant})'))
                    continue
                db.execute('INSERT OR REPLACE INTO submissions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                           (round_id, participant, kind, nonce, envelope, signature, package, receipt_signature,
                            at_ms, seq))
                errors.append(None)
        return errors

    def nonce_used(self, participant: str, nonce: str) -> bool:
        """Whether participant used nonce in an accepted submission (of any round)."""
        return self._db.execute('SELECT 1 FROM nonces WHERE participant = ? AND nonce = ?',
                                (participant, nonce)).fetchone() is not None

    def submissions(self, round_id: str, kind: str) -> dict[str, tuple[str, bytes, bytes, bytes]]:
        """{participant: (nonce, envelope, signature, package)} of a round's submissions of kind."""
        rows = self._db.execute('SELECT participant, nonce, envelope, signature, package FROM submissions '
                                'WHERE round_id = ? AND kind = ? ORDER BY participant', (round_id, kind))
        return {r[0]: (r[1], bytes(r[2]), bytes(r[3]), bytes(r[4])) for r in rows}

    def count(self, round_id: str, kind: str = 'order') -> int:
        """The number of a round's accepted submissions of kind."""
        return self._db.execute('SELECT COUNT(*) FROM submissions WHERE round_id = ? AND kind = ?',
                                (round_id, kind)).fetchone()[0]

    # -- results --------------------------------------------------------------------------------
    def put_results(self, round_id: str, results_by_participant: Mapping[str, tuple[str, bytes]], public_body: str,
                    public_signature: bytes, deviation_price2: Iterable[int] = ()) -> None:
        """Store a clearing's results in one transaction; the round is then cleared.

        Args:
            round_id: the round.
            results_by_participant: {participant: (status, shares)}.
            public_body, public_signature: the public results and this node's signature of them.
            deviation_price2: per slot, from the clearing's public outputs (for the settlement).
        """
        with self._transaction() as db:
            db.execute('UPDATE rounds SET deviation_price2 = ? WHERE round_id = ?',
                       (json.dumps([int(v) for v in deviation_price2]), round_id))
            db.execute('DELETE FROM results WHERE round_id = ?', (round_id,))
            db.executemany('INSERT INTO results VALUES (?, ?, ?, ?)',
                           [(round_id, p, status, shares) for p, (status, shares) in results_by_participant.items()])
            db.execute('INSERT OR REPLACE INTO public_results VALUES (?, ?, ?)',
                       (round_id, public_body, public_signature))
            db.execute("UPDATE rounds SET state = 'cleared', reason = '' WHERE round_id = ?", (round_id,))

    def results(self, round_id: str, participant: str) -> tuple[str, bytes] | None:
        """(status, shares) of a participant, None if it took no part."""
        row = self._db.execute('SELECT status, shares FROM results WHERE round_id = ? AND participant = ?',
                               (round_id, participant)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def result_statuses(self, round_id: str) -> dict[str, str]:
        """{participant: clearing status} of a cleared round."""
        rows = self._db.execute('SELECT participant, status FROM results WHERE round_id = ?', (round_id,))
        return dict(rows.fetchall())

    def put_settlement(self, round_id: str, rows: Mapping[str, tuple[str, bytes]], retailer_shares: bytes, body: str,
                       signature: bytes, delivery: Mapping[str, tuple[str, bytes]] | None = None) -> None:
        """Store a settlement's results in one transaction; the round is then settled.

        Args:
            round_id: the round.
            rows: {participant: (status, shares)}.
            retailer_shares: the retailer's shares.
            body, signature: the public settlement and this node's signature of it.
            delivery: {participant: (status, shares)} of the delivered flexibility (a round with a
                cleared flexibility round), or None.
        """
        with self._transaction() as db:
            for table, stored in (('settlement_results', rows), ('delivery_results', delivery or {})):
                db.execute(f'DELETE FROM {table} WHERE round_id = ?', (round_id,))  # a constant table name
                db.executemany(f'INSERT INTO {table} VALUES (?, ?, ?, ?)',
                               [(round_id, p, status, shares) for p, (status, shares) in stored.items()])
            db.execute('INSERT OR REPLACE INTO retailer_results VALUES (?, ?)', (round_id, retailer_shares))
            db.execute('INSERT OR REPLACE INTO settlement_public VALUES (?, ?, ?)', (round_id, body, signature))
            db.execute("UPDATE rounds SET settlement = 'settled', settle_reason = '' WHERE round_id = ?", (round_id,))

    def settlement_results(self, round_id: str, participant: str) -> tuple[str, bytes] | None:
        """(status, shares) of a participant's settlement, None if it was not settled."""
        row = self._db.execute('SELECT status, shares FROM settlement_results WHERE round_id = ? AND participant = ?',
                               (round_id, participant)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def delivery_results(self, round_id: str, participant: str) -> tuple[str, bytes] | None:
        """(status, shares) of a participant's delivered flexibility in a settled round, None if none."""
        row = self._db.execute('SELECT status, shares FROM delivery_results WHERE round_id = ? AND participant = ?',
                               (round_id, participant)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def retailer_results(self, round_id: str) -> bytes | None:
        """The retailer's settlement shares of a round, None if it was not settled."""
        row = self._db.execute('SELECT shares FROM retailer_results WHERE round_id = ?', (round_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def settlement_public(self, round_id: str) -> tuple[str, bytes] | None:
        """(body, this node's signature) of a round's public settlement, None if not settled."""
        row = self._db.execute('SELECT body, signature FROM settlement_public WHERE round_id = ?',
                               (round_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def use_request_nonce(self, participant: str, nonce: str) -> bool:
        """Record a results request's nonce; False if it was used before (a replay)."""
        with self._transaction() as db:
            try:
                db.execute('INSERT INTO result_requests VALUES (?, ?, ?)', (participant, nonce, now_ms()))
            except sqlite3.IntegrityError:
                return False
        return True

    def public_results(self, round_id: str) -> tuple[str, bytes] | None:
        """(body, this node's signature) of a round's public results, None if not cleared."""
        row = self._db.execute('SELECT body, signature FROM public_results WHERE round_id = ?', (round_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))


def _readings_refusal(round_: Round, at_ms: int) -> str:
    if not round_.readings_deadline_ms:
        return f'round {round_.round_id} takes no meter readings (it has no settlement)'
    if round_.state != 'cleared':
        return f'round {round_.round_id} is {round_.state}: meter readings are taken once it has cleared'
    if at_ms < round_.readings_open_ms:
        return f'round {round_.round_id}: the readings window has not opened yet'
    return f'round {round_.round_id}: the readings deadline has passed'


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock (ROLLBACK on error)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock):
        self.db, self.lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self.lock.acquire()
        self.db.execute('BEGIN IMMEDIATE')
        return self.db

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # None: an exception propagates
        try:
            self.db.execute('COMMIT' if exc_type is None else 'ROLLBACK')
        finally:
            self.lock.release()
