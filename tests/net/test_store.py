"""Durable node storage: acknowledged submissions survive a crash; replays and late orders fail."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from mpc_market.common.errors import BadParameter, Malformed, NotFound, Replayed, WrongPhase
from mpc_market.common.names import check_round_id
from mpc_market.net.broker import BrokerStore
from mpc_market.net.store import ROUND_FIELDS, Round, Store, now_ms


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / 'node.db'))
    s.open_round('r1', [1, 0], now_ms() + 60_000, '[market]\n')
    yield s
    s.close()


def submit(store, participant, nonce, package=b'pkg', kind='order', round_id='r1'):
    return store.accept(round_id, participant, kind, nonce, b'{}', b'sig', package, b'receipt')


def test_resubmission_replaces_and_nonces_are_single_use(store):
    submit(store, 'alice', 'n1', b'first')
    submit(store, 'alice', 'n2', b'second')
    with pytest.raises(WrongPhase, match='takes no meter readings'):  # r1 has no settlement
        submit(store, 'alice', 'n3', b'meter', kind='readings')
    assert store.submissions('r1', 'order') == {'alice': ('n2', b'{}', b'sig', b'second')}
    assert store.count('r1', 'readings') == 0
    with pytest.raises(Replayed, match='replayed'):
        submit(store, 'alice', 'n1', b'third')
    store.open_round('r2', [0], now_ms() + 60_000, '')
    with pytest.raises(Replayed, match='replayed'):  # a nonce from another round
        submit(store, 'alice', 'n2', round_id='r2')
    assert store.submissions('r1', 'order')['alice'][3] == b'second'


def test_readings_are_taken_only_in_the_window_after_clearing(store):
    """Not before clearing, not before the window opens, not after the deadline or once settling;
    an order is never taken in the window."""
    start = now_ms()
    store.open_round('s1', [0], start + 60_000, '[market]\n', readings_open_ms=start + 120_000,
                     readings_deadline_ms=start + 180_000, day='2026-12-01')
    with pytest.raises(WrongPhase, match='once it has cleared'):
        store.accept('s1', 'alice', 'readings', 'm1', b'{}', b'sig', b'meter', b'receipt', at_ms=start + 130_000)
    store.put_results('s1', {'alice': ('cleared', b'')}, '{}', b'sig', [30])
    for at, refusal in ((start + 100_000, 'not opened yet'), (start + 180_001, 'deadline has passed')):
        with pytest.raises(WrongPhase, match=refusal):
            store.accept('s1', 'alice', 'readings', f'm{at}', b'{}', b'sig', b'meter', b'receipt', at_ms=at)
    with pytest.raises(WrongPhase, match='closed for submissions'):
        store.accept('s1', 'alice', 'order', 'o1', b'{}', b'sig', b'late order', b'receipt', at_ms=start + 130_000)
    store.accept('s1', 'alice', 'readings', 'm2', b'{}', b'sig', b'meter', b'receipt', at_ms=start + 130_000)
    assert store.count('s1', 'readings') == 1 and store.round('s1').deviation_price2 == (30,)
    assert store.begin_settling('s1').settlement == 'settling'
    assert store.begin_settling('s1') is None  # never twice at once
    with pytest.raises(WrongPhase, match='readings'):
        store.accept('s1', 'bob', 'readings', 'm3', b'{}', b'sig', b'meter', b'receipt', at_ms=start + 130_000)
    store.fail_interrupted('restarted')
    assert store.round('s1').settlement == 'failed'
    with pytest.raises(WrongPhase, match='takes no meter readings|is open'):
        store.begin_settling('r1')


def test_late_and_unknown_rounds_are_refused_without_side_effects(store, tmp_path):
    with pytest.raises(NotFound, match='unknown round'):
        submit(store, 'bob', 'x', round_id='nope')
    store.open_round('past', [0], now_ms() - 1, '')
    with pytest.raises(WrongPhase, match='closed'):
        submit(store, 'bob', 'y', round_id='past')
    assert not store.nonce_used('bob', 'y')  # rolled back: the nonce stays usable
    store.set_state('r1', 'closed')
    with pytest.raises(WrongPhase, match='closed'):
        submit(store, 'bob', 'z')
    assert store.round('r1').state == 'closed'
    assert store.open_round('r1', [5], 0, 'other').slots == (0, 1)  # reopening is idempotent


def test_results_and_public_results(store):
    store.put_results('r1', {'alice': ('cleared', b'shares-a'), 'bob': ('missing', b'')}, '{"slots": []}', b'node-sig')
    assert store.results('r1', 'alice') == ('cleared', b'shares-a') and store.results('r1', 'carol') is None
    assert store.results('r1', 'bob') == ('missing', b'')
    assert store.public_results('r1') == ('{"slots": []}', b'node-sig')
    assert store.round('r1').state == 'cleared'


def test_an_acknowledged_submission_survives_a_crash(tmp_path):
    path = str(tmp_path / 'crash.db')
    child = textwrap.dedent(f'''
        import os, signal, sys
        from mpc_market.net.store import Store, now_ms
        s = Store({path!r})
        s.open_round('r1', [0], now_ms() + 60_000, '')
        s.accept('r1', 'alice', 'order', 'n1', b'{{}}', b'sig', b'package', b'receipt')
        print('ack', flush=True)           # the node acknowledges only now
        os.kill(os.getpid(), signal.SIGKILL)
    ''')
    proc = subprocess.run([sys.executable, '-c', child], capture_output=True, text=True)
    assert proc.stdout.strip() == 'ack' and proc.returncode == -signal.SIGKILL
    reopened = Store(path)
    assert reopened.submissions('r1', 'order')['alice'][3] == b'package'
    assert reopened.round('r1').state == 'open'
    reopened.close()
    assert os.path.exists(path)


# -- one rounds table and one Round for node and broker -------------------------------------------

# the first releases' DDL: the broker's and the node's rounds tables had these columns only, in
# different orders (deployments' files were created so; later columns were added by ALTER TABLE)
OLD_BROKER_SCHEMA = """
CREATE TABLE rounds (
    round_id TEXT PRIMARY KEY, slots TEXT NOT NULL, gate_closure_ms INTEGER NOT NULL,
    market_toml TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, created_ms INTEGER NOT NULL);
CREATE TABLE public_results (round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signatures TEXT NOT NULL);
CREATE TABLE settlement_public (round_id TEXT PRIMARY KEY, body TEXT NOT NULL, signatures TEXT NOT NULL);
INSERT INTO rounds VALUES ('old1', '[0, 1]', 1000, '[market]', 'cleared', '', 1, 500);
INSERT INTO public_results VALUES ('old1', '{}', '{"0": "aa", "1": "bb"}');
"""
OLD_NODE_SCHEMA = """
CREATE TABLE rounds (
    round_id TEXT PRIMARY KEY, slots TEXT NOT NULL, gate_closure_ms INTEGER NOT NULL,
    market_toml TEXT NOT NULL, state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);
CREATE TABLE submissions (
    round_id TEXT NOT NULL, participant TEXT NOT NULL, kind TEXT NOT NULL, nonce TEXT NOT NULL,
    envelope BLOB NOT NULL, signature BLOB NOT NULL, package BLOB NOT NULL,
    receipt_signature BLOB NOT NULL, accepted_ms INTEGER NOT NULL, PRIMARY KEY (round_id, participant, kind));
INSERT INTO rounds VALUES ('old1', '[3, 4]', 1000, '[market]', 'failed', 'node 1 restarted', 500, 2);
"""


def old_file(path, script):
    db = sqlite3.connect(path)
    db.executescript(script)
    db.commit()
    db.close()
    return str(path)


def spec(round_id, slots=(1, 0), **fields):
    """The fields of a RoundSpec BrokerStore.add reads."""
    return SimpleNamespace(round_id=round_id, slots=list(slots), gate_closure_unix_ms=now_ms() + 60_000,
                           market_toml='[market]\n', readings_open_unix_ms=0, readings_deadline_unix_ms=0, day='',
                           **fields)


def test_a_broker_database_of_the_first_schema_opens_and_keeps_its_rounds(tmp_path):
    """Its file has the old column order and none of the later columns: they are added, the old
    round reads with their defaults (no signed parameters: clients refuse it), and new rounds go in."""
    path = old_file(tmp_path / 'broker.db', OLD_BROKER_SCHEMA)
    for _ in range(2):  # the second open finds every column
        store = BrokerStore(path)
        old = store.get('old1')
        assert old == Round('old1', (0, 1), 1000, '[market]', 'cleared', attempts=1)
        assert old.params == '' and old.params_signatures == () and old.deviation_price2 == ()
        assert store.public('old1') == ('{}', {0: b'\xaa', 1: b'\xbb'})
        store.close()
    store = BrokerStore(path)
    store.add(spec('new1'), '{"params": 1}', {1: b'\x02', 0: b'\x01'})
    store.add(spec('new1', slots=[9]), 'other', {})  # opening is idempotent: the first record stays
    new = store.get('new1')
    assert new.slots == (0, 1) and new.state == 'open' and new.params == '{"params": 1}'
    assert new.params_signatures == ((0, b'\x01'), (1, b'\x02'))
    assert store.get('') == new  # the latest open round
    assert [r.round_id for r in store.rounds()] == ['old1', 'new1']
    assert [r.round_id for r in store.pending()] == ['new1']  # old1 cleared without settlement
    store.update('old1', state='failed', reason='x', final=True)
    assert (store.get('old1').state, store.get('old1').final) == ('failed', True)
    store.close()


def test_a_node_database_of_the_first_schema_opens_and_keeps_its_rounds(tmp_path):
    store = Store(old_file(tmp_path / 'node.db', OLD_NODE_SCHEMA))
    assert store.round('old1') == Round('old1', (3, 4), 1000, '[market]', 'failed', 'node 1 restarted', attempts=2)
    assert store.begin_clearing('old1').attempts == 3
    store.put_results('old1', {}, '{}', b'sig', [7, 8])
    assert store.round('old1').deviation_price2 == (7, 8) and store.round('old1').state == 'cleared'
    assert store.open_round('new1', [2, 1], now_ms() + 60_000, '').slots == (1, 2)
    store.close()


def test_node_and_broker_share_one_rounds_table(tmp_path):
    """Both stores create the same columns, and every one of them but the order key is a Round field;
    a Round survives its row encoding."""
    stores = (Store(str(tmp_path / 'node.db')), BrokerStore(str(tmp_path / 'broker.db')))
    columns = [[row[1] for row in s._db.execute('PRAGMA table_info(rounds)')] for s in stores]
    assert columns[0] == columns[1] and set(columns[0]) == {*ROUND_FIELDS, 'created_ms'}
    for s in stores:
        s.close()
    full = Round('r1', (0, 5), 10, 'toml', 'cleared', 'why', 3, 11, 12, '2026-12-01', (40, -2), 'failed', 'how', 2,
                 True, False, '{"p": 1}', ((0, b'\x00\xff'), (2, b'\x01')))
    assert Round.from_row(full.to_row()) == full


@pytest.mark.parametrize('bad', ['', '../x', 'a b', 'x' * 65, '-r', 7, None])
def test_every_store_refuses_a_bad_round_id_with_the_one_check(tmp_path, bad):
    with pytest.raises(Malformed, match='round id'):
        check_round_id(bad)
    broker = BrokerStore(str(tmp_path / 'broker.db'))
    with pytest.raises(Malformed, match='round id'):
        broker.add(spec(bad), '', {})
    assert broker.rounds() == []
    broker.close()
    with pytest.raises(Malformed, match='round id'):
        Round.opened(bad, [0], 0, '')


def test_column_and_table_names_are_checked_with_a_typed_error(store, tmp_path):
    """They go into the SQL text: a real check (not an assert), before anything is written."""
    broker = BrokerStore(str(tmp_path / 'broker.db'))
    broker.add(spec('r1'), '', {})
    with pytest.raises(BadParameter, match="'round_id'"):
        broker.update('r1', state='failed', round_id='r2')
    assert broker.get('r1').state == 'open' and broker.get('r2') is None
    with pytest.raises(BadParameter, match='table'):
        broker.public('r1', 'rounds')
    broker.close()
    with pytest.raises(BadParameter, match='state'):
        store.set_state('r1', 'done; DROP TABLE rounds')
    with pytest.raises(BadParameter, match='settlement'):
        store.set_settlement('r1', 'later')
    assert store.round('r1').state == 'open'
