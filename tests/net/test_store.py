"""Durable node storage: acknowledged submissions survive a crash; replays and late orders fail."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from mpc_market.common.errors import NotFound, Replayed, WrongPhase
from mpc_market.net.store import Store, now_ms


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
    assert store.open_round('r1', [5], 0, 'other').slots == [0, 1]  # reopening is idempotent


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
