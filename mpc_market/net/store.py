"""A node's durable state in SQLite (WAL, synchronous=FULL): rounds, accepted submissions with
their signed envelopes and receipts, used nonces, result shares and signed public results.

A submission is acknowledged only after its transaction commits, so an acknowledged order
survives a crash; a restarted node reopens the same file and resumes. Resubmitting before the
gate closes replaces the participant's package (same round, same kind); every nonce can be
used once, across all rounds (replay protection).
"""

import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import dataclass

from ..common.errors import Malformed, NotFound, Refused, Replayed, WrongPhase
from ..common.names import NAME_RULE, is_name

SCHEMA = """
CREATE TABLE IF NOT EXISTS rounds (
    round_id TEXT PRIMARY KEY, slots TEXT NOT NULL, gate_closure_ms INTEGER NOT NULL,
    market_toml TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
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
CREATE TABLE IF NOT EXISTS retailer_results (
    round_id TEXT PRIMARY KEY, shares BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS settlement_public (
    round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signature BLOB NOT NULL);
"""

# columns added after the first release: (table, column, declaration); added to older stores at start.
# The settlement columns of a round, at the nodes and at the broker:
SETTLEMENT_COLUMNS = (
    ('rounds', 'readings_open_ms', 'INTEGER NOT NULL DEFAULT 0'),
    ('rounds', 'readings_deadline_ms', 'INTEGER NOT NULL DEFAULT 0'),
    ('rounds', 'day', "TEXT NOT NULL DEFAULT ''"),
    ('rounds', 'settlement', "TEXT NOT NULL DEFAULT ''"),   # '' | settling | settled | failed
    ('rounds', 'settle_reason', "TEXT NOT NULL DEFAULT ''"),
    ('rounds', 'settle_attempts', 'INTEGER NOT NULL DEFAULT 0'),
)
LATER_COLUMNS = (
    ('submissions', 'seq', 'INTEGER NOT NULL DEFAULT 0'),
    ('rounds', 'deviation_price2', "TEXT NOT NULL DEFAULT '[]'"),
    *SETTLEMENT_COLUMNS,
    ('rounds', 'final', 'INTEGER NOT NULL DEFAULT 0'),         # node: the failure is deterministic
    ('rounds', 'settle_final', 'INTEGER NOT NULL DEFAULT 0'),
)

STATES = ('open', 'closed', 'clearing', 'cleared', 'failed')
SETTLEMENT_STATES = ('', 'settling', 'settled', 'failed')  # '' = not started
ROUND_COLUMNS = ('round_id, slots, gate_closure_ms, market_toml, state, reason, attempts, readings_open_ms, '
                 'readings_deadline_ms, day, deviation_price2, settlement, settle_reason, settle_attempts, final, '
                 'settle_final')  # Round


@dataclass(frozen=True)
class Round:
    round_id: str
    slots: list
    gate_closure_ms: int
    market_toml: str
    state: str
    reason: str
    attempts: int = 0
    readings_open_ms: int = 0
    readings_deadline_ms: int = 0     # 0: this round is not settled
    day: str = ''
    deviation_price2: tuple = ()      # per slot, from the clearing's public outputs
    settlement: str = ''
    settle_reason: str = ''
    settle_attempts: int = 0
    final: bool = False               # failed deterministically (a bad market, a bug): not retried
    settle_final: bool = False

    def readings_window_open(self, at_ms):
        return (self.state == 'cleared' and self.settlement == '' and self.readings_deadline_ms > 0
                and self.readings_open_ms <= at_ms <= self.readings_deadline_ms)


def _sha256(data):
    return hashlib.sha256(bytes(data)).digest()


def now_ms():
    return int(time.time() * 1000)


def add_later_columns(db, later_columns):
    """ALTER TABLE ... ADD COLUMN for each column a store written by an older version lacks."""
    for table, column, declaration in later_columns:
        if column not in {row[1] for row in db.execute(f'PRAGMA table_info({table})')}:
            db.execute(f'ALTER TABLE {table} ADD COLUMN {column} {declaration}')


def open_database(path, schema):
    """SQLite in WAL mode with synchronous=FULL: a committed transaction survives a crash."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute('PRAGMA journal_mode=WAL')
    db.execute('PRAGMA synchronous=FULL')
    db.executescript(schema)
    return db


class SqliteStore:
    """The durable-state recipe of node, broker and aggregator: one SQLite file in WAL mode with
    synchronous=FULL, one lock, writes in ``BEGIN IMMEDIATE`` transactions."""

    schema = ''

    def __init__(self, path):
        self.path = path
        self._lock = threading.Lock()
        self._db = open_database(path, self.schema)

    def close(self):
        with self._lock:
            self._db.close()

    def _transaction(self):
        return Transaction(self._db, self._lock)

    def round_phase_rows(self) -> list[tuple[str, str, bool, int]]:
        """(state, settlement, has a readings deadline, rounds) of a node's or the broker's rounds
        table, for the metrics (no round id)."""
        with self._lock:
            rows = self._db.execute(
                'SELECT state, settlement, readings_deadline_ms > 0, COUNT(*) FROM rounds GROUP BY 1, 2, 3')
            return [(state, settlement, bool(deadline), count) for state, settlement, deadline, count in rows]


class Store(SqliteStore):
    """A market node's rounds, submissions (envelopes, share packages, receipts), nonces and results."""

    schema = SCHEMA

    def __init__(self, path):
        super().__init__(path)
        add_later_columns(self._db, LATER_COLUMNS)

    # -- rounds ---------------------------------------------------------------------------------
    def open_round(self, round_id, slots, gate_closure_ms, market_toml, readings_open_ms=0, readings_deadline_ms=0,
                   day=''):
        if not is_name(round_id):
            raise Malformed(f'round id {str(round_id)[:80]!r} is not {NAME_RULE}')
        with self._transaction() as db:
            existing = db.execute('SELECT state FROM rounds WHERE round_id = ?', (round_id,)).fetchone()
            if existing is not None:
                return self.round(round_id, db)  # idempotent: a restarted broker may reopen
            db.execute('INSERT INTO rounds (round_id, slots, gate_closure_ms, market_toml, state, reason, created_ms, '
                       'attempts, readings_open_ms, readings_deadline_ms, day) '
                       'VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)',
                       (round_id, json.dumps(sorted(slots)), gate_closure_ms, market_toml, 'open', '', now_ms(),
                        readings_open_ms, readings_deadline_ms, day))
        return self.round(round_id)

    def round(self, round_id, db=None):
        row = (db or self._db).execute(f'SELECT {ROUND_COLUMNS} FROM rounds WHERE round_id = ?',
                                       (round_id,)).fetchone()
        if row is None:
            raise NotFound(f'unknown round {round_id!r}')
        return Round(row[0], json.loads(row[1]), *row[2:10], tuple(json.loads(row[10])), *row[11:14],
                     bool(row[14]), bool(row[15]))

    def set_state(self, round_id: str, state: str, reason: str = '', final: bool = False) -> None:
        """Set a round's state and reason; final marks a deterministic failure no rerun repeats.

        Raises:
            NotFound: no such round.
            ValueError: state is not one of STATES.
        """
        if state not in STATES:
            raise ValueError(f'unknown round state {state!r}')
        with self._transaction() as db:
            self.round(round_id, db)
            db.execute('UPDATE rounds SET state = ?, reason = ?, final = ? WHERE round_id = ?',
                       (state, reason, int(final), round_id))

    def begin_clearing(self, round_id, rerun=False):
        """Close the gate and mark the round clearing (again, after a failure); None if it is
        already clearing, or cleared and not rerun."""
        with self._transaction() as db:
            current = self.round(round_id, db)
            if current.state == 'clearing' or (current.state == 'cleared' and not rerun):
                return None
            db.execute("UPDATE rounds SET state = 'clearing', reason = '', final = 0, attempts = attempts + 1 "
                       'WHERE round_id = ?', (round_id,))
        return self.round(round_id)

    def fail_interrupted(self, reason):
        """At start-up: rounds left clearing or settling by a crash are failed (the broker re-runs them)."""
        with self._transaction() as db:
            db.execute("UPDATE rounds SET state = 'failed', reason = ? WHERE state = 'clearing'", (reason,))
            db.execute("UPDATE rounds SET settlement = 'failed', settle_reason = ? WHERE settlement = 'settling'",
                       (reason,))

    def begin_settling(self, round_id, rerun=False):
        """Close the readings window (the broker decides when, as it decides the gate closure) and mark
        the round settling (again, after a failure); None if it is settling, or settled and not rerun.
        Raises WrongPhase unless the round cleared and has a settlement."""
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

        Raises:
            NotFound: no such round.
            ValueError: settlement is not one of SETTLEMENT_STATES.
        """
        if settlement not in SETTLEMENT_STATES:
            raise ValueError(f'unknown settlement state {settlement!r}')
        with self._transaction() as db:
            self.round(round_id, db)
            db.execute('UPDATE rounds SET settlement = ?, settle_reason = ?, settle_final = ? WHERE round_id = ?',
                       (settlement, reason, int(final), round_id))

    # -- submissions ----------------------------------------------------------------------------
    def accept(self, round_id, participant, kind, nonce, envelope, signature, package, receipt_signature,
               at_ms=None, seq=0):
        """Store a checked submission atomically; replaces an earlier one of the same kind."""
        at_ms = now_ms() if at_ms is None else at_ms
        error = self.accept_many([(round_id, participant, kind, nonce, envelope, signature, package,
                                   receipt_signature, seq)], at_ms)[0]
        if error is not None:
            raise error
        return at_ms

    def accept_many(self, items, at_ms=None):
        """Store checked submissions in one commit (one fsync); [None or the Refused error] per item.
        items: (round_id, participant, kind, nonce, envelope, signature, package, receipt_signature, seq).
        Of two envelopes of one participant the higher (seq, SHA-256 of the envelope) is kept, in
        whatever order they arrive, so every node that sees both keeps the same one.
        """
        at_ms = now_ms() if at_ms is None else at_ms
        errors = []
        with self._transaction() as db:
            rounds = {}
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

    def nonce_used(self, participant, nonce):
        return self._db.execute('SELECT 1 FROM nonces WHERE participant = ? AND nonce = ?',
                                (participant, nonce)).fetchone() is not None

    def submissions(self, round_id, kind):
        """{participant: (nonce, envelope, signature, package)} of a round."""
        rows = self._db.execute('SELECT participant, nonce, envelope, signature, package FROM submissions '
                                'WHERE round_id = ? AND kind = ? ORDER BY participant', (round_id, kind))
        return {r[0]: (r[1], bytes(r[2]), bytes(r[3]), bytes(r[4])) for r in rows}

    def count(self, round_id, kind='order'):
        return self._db.execute('SELECT COUNT(*) FROM submissions WHERE round_id = ? AND kind = ?',
                                (round_id, kind)).fetchone()[0]

    # -- results --------------------------------------------------------------------------------
    def put_results(self, round_id, results_by_participant, public_body, public_signature, deviation_price2=()):
        """{participant: (status, shares)} and the signed public results, in one transaction."""
        with self._transaction() as db:
            db.execute('UPDATE rounds SET deviation_price2 = ? WHERE round_id = ?',
                       (json.dumps([int(v) for v in deviation_price2]), round_id))
            db.execute('DELETE FROM results WHERE round_id = ?', (round_id,))
            db.executemany('INSERT INTO results VALUES (?, ?, ?, ?)',
                           [(round_id, p, status, shares) for p, (status, shares) in results_by_participant.items()])
            db.execute('INSERT OR REPLACE INTO public_results VALUES (?, ?, ?)',
                       (round_id, public_body, public_signature))
            db.execute("UPDATE rounds SET state = 'cleared', reason = '' WHERE round_id = ?", (round_id,))

    def results(self, round_id, participant):
        """(status, shares) of a participant, None if it took no part."""
        row = self._db.execute('SELECT status, shares FROM results WHERE round_id = ? AND participant = ?',
                               (round_id, participant)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def result_statuses(self, round_id):
        """{participant: clearing status} of a cleared round."""
        rows = self._db.execute('SELECT participant, status FROM results WHERE round_id = ?', (round_id,))
        return dict(rows.fetchall())

    def put_settlement(self, round_id, rows, retailer_shares, body, signature):
        """{participant: (status, shares)}, the retailer's shares and the signed public settlement, in one
        transaction; the round is then settled."""
        with self._transaction() as db:
            db.execute('DELETE FROM settlement_results WHERE round_id = ?', (round_id,))
            db.executemany('INSERT INTO settlement_results VALUES (?, ?, ?, ?)',
                           [(round_id, p, status, shares) for p, (status, shares) in rows.items()])
            db.execute('INSERT OR REPLACE INTO retailer_results VALUES (?, ?)', (round_id, retailer_shares))
            db.execute('INSERT OR REPLACE INTO settlement_public VALUES (?, ?, ?)', (round_id, body, signature))
            db.execute("UPDATE rounds SET settlement = 'settled', settle_reason = '' WHERE round_id = ?", (round_id,))

    def settlement_results(self, round_id, participant):
        """(status, shares) of a participant's settlement, None if it was not settled."""
        row = self._db.execute('SELECT status, shares FROM settlement_results WHERE round_id = ? AND participant = ?',
                               (round_id, participant)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def retailer_results(self, round_id):
        row = self._db.execute('SELECT shares FROM retailer_results WHERE round_id = ?', (round_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def settlement_public(self, round_id):
        row = self._db.execute('SELECT body, signature FROM settlement_public WHERE round_id = ?',
                               (round_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))

    def use_request_nonce(self, participant, nonce):
        """Record a results request's nonce; False if it was used before (a replay)."""
        with self._transaction() as db:
            try:
                db.execute('INSERT INTO result_requests VALUES (?, ?, ?)', (participant, nonce, now_ms()))
            except sqlite3.IntegrityError:
                return False
        return True

    def public_results(self, round_id):
        row = self._db.execute('SELECT body, signature FROM public_results WHERE round_id = ?', (round_id,)).fetchone()
        return None if row is None else (row[0], bytes(row[1]))


def _readings_refusal(round_, at_ms):
    if not round_.readings_deadline_ms:
        return f'round {round_.round_id} takes no meter readings (it has no settlement)'
    if round_.state != 'cleared':
        return f'round {round_.round_id} is {round_.state}: meter readings are taken once it has cleared'
    if at_ms < round_.readings_open_ms:
        return f'round {round_.round_id}: the readings window has not opened yet'
    return f'round {round_.round_id}: the readings deadline has passed'


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT under the store's lock (ROLLBACK on error)."""

    def __init__(self, db, lock):
        self.db, self.lock = db, lock

    def __enter__(self):
        self.lock.acquire()
        self.db.execute('BEGIN IMMEDIATE')
        return self.db

    def __exit__(self, exc_type, exc, tb):
        try:
            self.db.execute('COMMIT' if exc_type is None else 'ROLLBACK')
        finally:
            self.lock.release()
        return False
