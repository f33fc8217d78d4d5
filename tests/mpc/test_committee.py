"""Scenario S1 at any size: the committee lottery, its transcript, and S1 runs beyond 7 peers."""

import json
import math
import random
from itertools import combinations

import pytest

from mpc_market.common.errors import EngineError
from mpc_market.market.plain import clear_plain
from mpc_market.mpc import committee
from mpc_market.mpc.local import clear_mpc, clear_peers
from tests.mpc.test_clearing import SMALL, book_of

from helpers import cli, random_orders

PEERS = [f'p{i:02d}' for i in range(17)]


def test_transcript_verifies_and_every_forgery_is_named():
    transcript = committee.draw('r1', PEERS, 5)
    assert committee.verify(transcript) == transcript['committee'] and len(set(transcript['committee'])) == 5
    forgeries = {
        'does not match its commitment': lambda t: t['nonces'].update(p03='00' * 32),
        'committee is not the lottery': lambda t: t['committee'].__setitem__(0, next(
            p for p in PEERS if p not in t['committee'])),  # a peer seating itself
        'seed is not the hash': lambda t: t.update(seed='00' * 32),
        'committed and that revealed differ': lambda t: t['nonces'].pop('p05'),
        'malformed': lambda t: t['nonces'].update(p01='not hex'),
    }
    for message, forge in forgeries.items():
        forged = json.loads(json.dumps(transcript))
        forge(forged)
        with pytest.raises(EngineError, match=message):
            committee.verify(forged)
    # the same nonces in another round draw another seed: a transcript is bound to its round
    replayed = dict(json.loads(json.dumps(transcript)), round='r2')
    with pytest.raises(EngineError, match='does not match its commitment'):
        committee.verify(replayed)


def test_the_lottery_is_uniform_and_every_nonce_moves_it():
    rng = random.Random(7)
    seats = dict.fromkeys(PEERS, 0)
    draws = 3000
    for r in range(draws):
        for p in committee.draw(f'r{r}', PEERS, 5, lambda peer: rng.randbytes(32))['committee']:
            seats[p] += 1
    expected = 5 / len(PEERS)  # 0.294; 0.05 is six standard deviations at 3,000 draws
    assert all(abs(n / draws - expected) < 0.05 for n in seats.values()), seats
    # one peer's nonce alone changes the seed: the last to commit cannot fix the draw in advance
    fixed = {p: bytes(32) for p in PEERS}
    seeds = {committee.seed_of('r', {**fixed, 'p16': bytes([i]) * 32}) for i in range(20)}
    assert len(seeds) == 20


def test_capture_probability_is_the_hypergeometric_tail():
    peers, corrupt, size = 9, 3, 5
    honest = [f'h{i}' for i in range(peers - corrupt)]
    bad = [f'c{i}' for i in range(corrupt)]
    captured = sum(1 for seats in combinations(honest + bad, size) if sum(s in bad for s in seats) > 2)
    assert math.isclose(committee.capture_probability(peers, corrupt, size), captured / math.comb(peers, size))
    assert committee.capture_probability(50, 0, 5) == 0 and committee.capture_probability(50, 50, 5) == 1


def test_committee_sizes():
    assert committee.committee_size(4) == 4 and committee.committee_size(7) == 7
    assert committee.committee_size(17) == 5 and committee.committee_size(500, 3) == 3
    for peers, size in ((2, None), (4, 5), (500, 12), (500, 2)):
        with pytest.raises(EngineError):
            committee.committee_size(peers, size)


@pytest.mark.slow
def test_s1_with_17_peers_runs_on_a_drawn_committee_and_equals_the_reference():
    book = book_of(random_orders(random.Random(17), 17), SMALL)
    result = clear_peers(book, timeout=300)
    plain = clear_plain(book)
    assert result.slots == plain.slots and result.rows == plain.rows
    assert result.stats['nodes'] == 5 and committee.verify(result.stats['committee']) == \
        result.stats['committee']['committee']


@pytest.mark.slow
def test_nine_market_nodes_equal_the_reference():
    book = book_of(random_orders(random.Random(9), 12), SMALL)
    secure = clear_mpc(book, nodes=9, timeout=300)
    assert secure.rows == clear_plain(book).rows and secure.stats['nodes'] == 9
    assert secure.stats['messages_per_link'] > 0


@pytest.mark.slow
def test_cli_peers_committee_writes_a_transcript_anyone_can_verify(tmp_path):
    cli('generate', '--participants', '12', '--slots', '2', '--out', str(tmp_path / 'c'), check=True)
    common = ['--orders', str(tmp_path / 'c' / 'orders.csv'), '--config', str(tmp_path / 'c' / 'market.toml')]
    out = cli('clear', *common, '--out', str(tmp_path / 'r'), '--mode', 'peers', '--committee', '3', '--quiet',
              check=True).stdout
    assert 'S1 committee drawn by lottery from 12 peers' in out
    assert 'verified' in cli('verify-committee', str(tmp_path / 'r' / 'summary.json'), check=True).stdout
    summary = json.loads((tmp_path / 'r' / 'summary.json').read_text())
    summary['stats']['committee']['committee'].reverse()
    (tmp_path / 'forged.json').write_text(json.dumps(summary))
    forged = cli('verify-committee', str(tmp_path / 'forged.json'))
    assert forged.returncode == 2 and 'forged.json:1: committee:' in forged.stderr
    assert 'Traceback' not in forged.stderr
    cli('clear', *common, '--out', str(tmp_path / 'local'), '--engine', 'plain', check=True)
    no_lottery = cli('verify-committee', str(tmp_path / 'local' / 'summary.json'))
    assert no_lottery.returncode == 2 and 'no committee lottery transcript in this file' in no_lottery.stderr
    wrong_mode = cli('clear', *common, '--out', str(tmp_path / 'y'), '--committee', '3')
    assert wrong_mode.returncode == 2 and 'committee' in wrong_mode.stderr
