"""Scenario S1 at any size: the signed committee lottery, its transcript, what a coalition can do
to it, and S1 runs beyond 7 peers."""

import copy
import json
import math
import os
import random
import re
import subprocess
import sys
from itertools import combinations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpc_market.common import keys as keyfiles
from mpc_market.common.errors import EngineError
from mpc_market.market.plain import clear_plain
from mpc_market.mpc import committee
from mpc_market.mpc.local import clear_mpc, clear_peers
from tests.mpc.test_clearing import SMALL, book_of

from helpers import REPO, cli, random_orders, run_examples

PEERS = [f'p{i:02d}' for i in range(17)]
COMMUNITY = [f'h{i:02d}' for i in range(1, 41)]   # the reviewer's 40 peers
COALITION = ['h01', 'h02', 'h03']
ERROR_LINE = re.compile(r'^error: [^\n]+?(:\d+)?: [a-z_]+: [^\n]+\n$')  # FILE[:LINE]: field: message


def signed_draw(round_id, peers, requested=None, **options):
    """An honest draw with a fresh key per peer: (transcript, peer -> private key, registry)."""
    private, registry = committee.peer_keys(peers)
    return committee.draw(round_id, peers, requested, keys=private, **options), private, registry


def edited(transcript, edit):
    forged = copy.deepcopy(transcript)
    edit(forged)
    return forged


def write_registry(path, transcript):
    """A registry file of a transcript's own keys (0644: only a file others cannot rewrite is trusted)."""
    path.write_text(json.dumps(transcript['registry']))
    os.chmod(path, 0o644)
    return path


def ground_transcript(round_id, peers, coalition_keys, rng):
    """The reviewer's attack: one party chooses every peer's nonce and grinds until its coalition
    holds a majority of the committee. It holds only the coalition's keys, so it signs the honest
    peers' messages with keys of its own making. Returns (transcript, tries)."""
    own = {**committee.peer_keys(peers)[0], **coalition_keys}
    size = committee.committee_size(len(peers))
    for tries in range(1, 200_000):
        nonces = {p: rng.randbytes(32) for p in peers}
        commitments = {p: committee.commitment(round_id, 0, p, n) for p, n in nonces.items()}
        seed = committee.seed_of(committee.list_digest(round_id, None, 0, b'', commitments), nonces)
        if sum(p in coalition_keys for p in committee.rank(seed, peers)[:size]) > (size - 1) // 2:
            return committee.draw(round_id, peers, keys=own, nonce_of=nonces.__getitem__), tries
    raise AssertionError('no capture in 200,000 tries')


def test_transcript_verifies_and_every_forgery_is_named():
    transcript, _, registry = signed_draw('r1', PEERS, 5)
    assert committee.verify(transcript, registry) == transcript['committee'] and len(set(transcript['committee'])) == 5
    assert committee.verify(transcript, registry, 'r1') == transcript['committee']
    outsider = next(p for p in PEERS if p not in transcript['committee'])
    forgeries = {
        'does not match its commitment': lambda t: t['attempts'][0]['nonces'].update(p03='00' * 32),
        'committee is not the lottery': lambda t: t['committee'].__setitem__(0, outsider),  # a peer seating itself
        'seed is not the hash': lambda t: t.update(seed='00' * 32),
        'nonces must name exactly the 17 peers': lambda t: t['attempts'][0]['nonces'].pop('p05'),
        'nonce of p01 must be exactly 32 bytes': lambda t: t['attempts'][0]['nonces'].update(p01='not hex'),
        'must be sorted': lambda t: t['peers'].reverse(),
    }
    for message, forge in forgeries.items():
        with pytest.raises(EngineError, match=message):
            committee.verify(edited(transcript, forge), registry)
    # the same signatures in another round: every signed message is bound to its round
    with pytest.raises(EngineError, match='the commitment of p00 is not signed by its registered key'):
        committee.verify(dict(copy.deepcopy(transcript), round='r2'), registry)
    with pytest.raises(EngineError, match='of round r1, not r2'):
        committee.verify(transcript, registry, 'r2')


def test_a_ground_transcript_fails_without_the_honest_peers_signatures(tmp_path):
    """The review's attack on the old lottery: one party chose all 40 nonces and ground until
    {h01, h02, h03} held a majority of the committee. Its transcript is consistent with itself
    (the old verifier's whole check) but the honest peers never signed it."""
    private, registry = committee.peer_keys(COMMUNITY)
    ground, tries = ground_transcript('r1', COMMUNITY, {p: private[p] for p in COALITION}, random.Random(1512))
    seats = ground['committee']
    assert sum(p in COALITION for p in seats) > 2 and tries < 200_000
    assert committee.verify(ground, committee.transcript_registry(ground)) == seats  # consistent with itself
    with pytest.raises(EngineError, match="transcript's key of h04 is not its key in the registry you hold"):
        committee.verify(ground, registry)
    ground.pop('registry')  # without the copy, the first honest peer's signature is what fails
    with pytest.raises(EngineError, match='attempt 0: the commitment of h04 is not signed by its registered key'):
        committee.verify(ground, registry)


def test_a_coalition_cannot_choose_its_nonces_after_the_list_is_signed():
    """A coalition that saw every honest nonce (a reveal before the list was fixed) regrinds its
    own nonces and re-signs its own commitments and list signatures: the honest peers' list
    signatures are over another commitment set, so the transcript fails."""
    honest, private, registry = signed_draw('r1', COMMUNITY)
    attempt = honest['attempts'][0]
    nonces = {p: bytes.fromhex(n) for p, n in attempt['nonces'].items()}
    rng = random.Random(3)
    size = committee.committee_size(len(COMMUNITY))
    for _ in range(200_000):
        nonces.update({p: rng.randbytes(32) for p in COALITION})
        commitments = {p: committee.commitment('r1', 0, p, n) for p, n in nonces.items()}
        digest = committee.list_digest('r1', None, 0, b'', commitments)
        seed = committee.seed_of(digest, nonces)
        if sum(p in COALITION for p in committee.rank(seed, COMMUNITY)[:size]) > 2:
            break
    forged = copy.deepcopy(honest)
    for p in COALITION:
        c = commitments[p]
        forged['attempts'][0]['commitments'][p] = {
            'commitment': c, 'signature': private[p].sign(committee.commitment_message('r1', 0, p, c)).hex()}
        forged['attempts'][0]['list_signatures'][p] = private[p].sign(committee.list_message(p, digest)).hex()
        forged['attempts'][0]['nonces'][p] = nonces[p].hex()
    forged.update(seed=seed.hex(), committee=committee.rank(seed, COMMUNITY)[:size])
    with pytest.raises(EngineError, match='attempt 0: h04 did not sign this commitment list'):
        committee.verify(forged, registry)
    # one honest list signature made over a different commitment set fails the same way
    other = committee.list_digest('r1', None, 0, b'', {**commitments, 'h07': '00' * 32})
    one_other = edited(honest, lambda t: t['attempts'][0]['list_signatures'].update(
        h07=private['h07'].sign(committee.list_message('h07', other)).hex()))
    with pytest.raises(EngineError, match='attempt 0: h07 did not sign this commitment list'):
        committee.verify(one_other, registry)


def test_a_committee_of_one_or_a_draw_among_3_of_40_peers_fails():
    honest, private, registry = signed_draw('r1', COMMUNITY)
    with pytest.raises(EngineError, match='the committee has 1 seats; a draw among 40 peers seats 5'):
        committee.verify(edited(honest, lambda t: t.update(committee=t['committee'][:1])), registry)
    with pytest.raises(EngineError, match='requested must be null or an integer 3..11'):
        committee.verify(edited(honest, lambda t: t.update(requested=1)), registry)
    # three peers run a fully signed lottery among themselves: not the round's peers
    three = committee.draw('r1', COALITION, keys={p: private[p] for p in COALITION})
    with pytest.raises(EngineError, match=r"peers are not the registry's participants \(37 registered peers left out"):
        committee.verify(three, registry)
    with pytest.raises(EngineError, match='needs 3..11 nodes'):
        committee.draw('r1', COALITION, 5, keys=private)


def test_unsigned_or_missing_signatures_fail():
    honest, private, registry = signed_draw('r1', PEERS)
    forgeries = {
        'commitment of p02 must have exactly the fields': lambda t: t['attempts'][0]['commitments']['p02'].pop(
            'signature'),
        'the commitment of p02 is not signed by its registered key': lambda t: t['attempts'][0]['commitments'][
            'p02'].update(signature='00' * 64),
        'list_signatures must name exactly the 17 peers': lambda t: t['attempts'][0]['list_signatures'].pop('p09'),
        'p09 did not sign this commitment list': lambda t: t['attempts'][0]['list_signatures'].update(
            p09=t['attempts'][0]['list_signatures']['p10']),
        'the commitment of p02 is not signed': lambda t: t['attempts'][0]['commitments']['p02'].update(
            signature=t['attempts'][0]['commitments']['p03']['signature']),
        'not a signed lottery transcript': lambda t: t.update(lottery='mpc-market committee lottery v1'),
    }
    for message, forge in forgeries.items():
        with pytest.raises(EngineError, match=message):
            committee.verify(edited(honest, forge), registry)
    # the old, unsigned format (the reviewer's transcripts) is refused as such
    old = {'round': 'r1', 'size': 5, 'commitments': {}, 'nonces': {}, 'seed': '00' * 32, 'committee': []}
    with pytest.raises(EngineError, match='must have exactly the fields'):
        committee.verify(old, registry)


@pytest.mark.parametrize('length', [31, 33])
def test_a_nonce_of_other_than_32_bytes_fails_even_when_signed(length):
    honest, _, registry = signed_draw('r1', PEERS, nonce_of=lambda p: os.urandom(length if p == 'p04' else 32))
    with pytest.raises(EngineError, match='attempt 0: nonce of p04 must be exactly 32 bytes'):
        committee.verify(honest, registry)


def coalition_strategy(coalition, threshold, budget):
    """Withhold one coalition member while the draw it would get does not capture the committee,
    as long as `budget` members may still withhold (the best a coalition can do)."""
    used = []

    def withhold(attempt, peers, nonces, seats):
        if sum(p in coalition for p in seats) > threshold or len(used) >= budget:
            return set()
        member = next(p for p in coalition if p in peers and p not in seats)  # keep the seated ones
        used.append(member)
        return {member}
    return withhold


def test_withholding_buys_at_most_one_fresh_draw_per_withholder():
    peers, coalition, size = [f'q{i:02d}' for i in range(12)], ['q00', 'q01', 'q02', 'q03', 'q04'], 3
    private, registry = committee.peer_keys(peers)
    rng = random.Random(21)
    trials, captured = 500, {0: 0, 2: 0}
    for budget in captured:
        for trial in range(trials):
            t = committee.draw(f'r{trial}', peers, size, keys=private, nonce_of=lambda p: rng.randbytes(32),
                               withhold=coalition_strategy(coalition, 1, budget))
            withheld = [p for a in t['attempts'] for p in a['withheld']]
            assert len(t['attempts']) == len(withheld) + 1 <= budget + 1
            assert not set(withheld) & set(t['committee']) and set(withheld) <= set(coalition)
            captured[budget] += sum(p in coalition for p in t['committee']) > 1
            if trial < 20:
                assert committee.verify(t, registry) == t['committee']
    for budget, count in captured.items():  # 0.364 and 0.625; 0.07 is over 3 standard deviations at 500
        assert abs(count / trials - committee.capture_probability(12, 5, size, budget)) < 0.07, (budget, count)
    assert committee.capture_probability(12, 5, 3, 2) > committee.capture_probability(12, 5, 3) + 0.2
    assert committee.capture_probability(12, 5, 3, 2) <= 3 * committee.capture_probability(12, 5, 3)


def falsely_exclude_p02(t):
    """Claim that honest p02 withheld in attempt 0 and drop it from attempt 1."""
    t['attempts'][0]['withheld'].append('p02')
    t['attempts'][0]['nonces'].pop('p02')
    for field in ('commitments', 'list_signatures', 'nonces'):
        t['attempts'][1][field].pop('p02')


def test_withheld_peers_are_excluded_and_only_the_remaining_peers_can_attest_it():
    peers = PEERS[:9]
    once = iter([{'p01'}])
    t, private, registry = signed_draw('r1', peers, 3, withhold=lambda *_: next(once, set()))
    assert [a['withheld'] for a in t['attempts']] == [['p01'], []] and 'p01' not in t['committee']
    assert sorted(t['attempts'][1]['commitments']) == [p for p in peers if p != 'p01']
    assert all(t['attempts'][0]['nonces'][p] != n for p, n in t['attempts'][1]['nonces'].items())  # fresh nonces
    assert committee.verify(t, registry) == t['committee']
    forgeries = {
        # claiming an honest peer withheld changes what attempt 1's list signatures sign
        'attempt 1: p00 did not sign this commitment list': falsely_exclude_p02,
        'attempt 0: an attempt before the last names no withheld peer': lambda t: t['attempts'][0].update(withheld=[]),
        'the last attempt has withheld peers': lambda t: t['attempts'][1].update(withheld=['p03']),
        'attempt 0: nonces must name exactly the 8 peers': lambda t: t['attempts'][0]['nonces'].update(
            p01='00' * 32),
        'attempt 1: commitments must name exactly the 8 peers of the attempt \\(1 missing': lambda t: t['attempts'][1][
            'commitments'].pop('p02'),
        'attempts must be a list of 1..4': lambda t: t.update(attempts=[]),
    }
    for message, forge in forgeries.items():
        with pytest.raises(EngineError, match=message):
            committee.verify(edited(t, forge), registry)
    # re-draws are bounded: after MAX_ATTEMPTS aborted attempts the round has no committee
    with pytest.raises(EngineError, match=r'aborted 4 times'):
        committee.draw('r1', PEERS, 3, keys=committee.peer_keys(PEERS)[0], withhold=lambda a, p, n, s: {p[0]})


def test_the_lottery_is_uniform_and_every_nonce_moves_it():
    rng = random.Random(7)
    private = committee.peer_keys(PEERS)[0]
    seats = dict.fromkeys(PEERS, 0)
    draws = run_examples(2000)
    for r in range(draws):
        for p in committee.draw(f'r{r}', PEERS, 5, keys=private, nonce_of=lambda peer: rng.randbytes(32))['committee']:
            seats[p] += 1
    expected = 5 / len(PEERS)  # 0.294: 4.5 standard deviations are 0.046 at 2,000 draws (0.145 at 200)
    assert all(abs(n / draws - expected) < 4.5 * math.sqrt(expected * (1 - expected) / draws)
               for n in seats.values()), seats
    # one peer's nonce alone changes the seed: the last to reveal cannot fix the draw in advance
    fixed = {p: bytes(32) for p in PEERS}
    seeds = {committee.seed_of(b'd' * 32, {**fixed, 'p16': bytes([i]) * 32}) for i in range(20)}
    assert len(seeds) == 20


def test_capture_probability_is_the_hypergeometric_tail():
    peers, corrupt, size = 9, 3, 5
    honest = [f'h{i}' for i in range(peers - corrupt)]
    bad = [f'c{i}' for i in range(corrupt)]
    captured = sum(1 for seats in combinations(honest + bad, size) if sum(s in bad for s in seats) > 2)
    assert math.isclose(committee.capture_probability(peers, corrupt, size), captured / math.comb(peers, size))
    assert committee.capture_probability(50, 0, 5) == 0 and committee.capture_probability(50, 50, 5) == 1
    # each withholder adds one independent draw among one peer fewer, and never more than that
    p = [committee.capture_probability(12 - k, 5 - k, 3) for k in range(3)]
    assert math.isclose(committee.capture_probability(12, 5, 3, 2), 1 - (1 - p[0]) * (1 - p[1]) * (1 - p[2]))
    assert committee.capture_probability(12, 5, 3, 99) == committee.capture_probability(12, 5, 3, 5)
    assert committee.capture_probability(500, 100, 5, 3) <= 4 * committee.capture_probability(500, 100, 5)


def test_committee_sizes():
    assert committee.committee_size(4) == 4 and committee.committee_size(7) == 7
    assert committee.committee_size(17) == 5 and committee.committee_size(500, 3) == 3
    for peers, size in ((2, None), (4, 5), (500, 12), (500, 2), (committee.MAX_PEERS + 1, None)):
        with pytest.raises(EngineError):
            committee.committee_size(peers, size)


# -- malformed transcripts: one line, never a traceback -----------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=70),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                max_size=4), max_leaves=20)
HONEST, _, HONEST_REGISTRY = signed_draw('r1', PEERS[:5])


def _paths(value, path=()):
    yield path
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield from _paths(child, path + (key,))


def _replace(document, path, value):
    if not path:
        return value
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@settings(max_examples=run_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_edit_of_a_transcript_is_refused_in_one_line(data):
    paths = list(_paths(HONEST))
    path = data.draw(st.sampled_from(paths))
    forged = _replace(copy.deepcopy(HONEST), path, data.draw(JSON))
    try:
        assert committee.verify(forged, HONEST_REGISTRY) == HONEST['committee']
    except EngineError as e:
        assert '\n' not in str(e) and len(str(e)) < 400


@settings(max_examples=run_examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_any_json_is_refused_in_one_line(document):
    with pytest.raises(EngineError) as e:
        committee.verify(document, HONEST_REGISTRY)
    assert '\n' not in str(e.value)


def test_the_reviews_malformed_transcripts_are_one_line_errors_on_the_command_line(tmp_path):
    registry = write_registry(tmp_path / 'registry.json', HONEST)
    cases = {
        'nonces a list': edited(HONEST, lambda t: t['attempts'][0].update(nonces=['00' * 32])),
        'commitments an int': edited(HONEST, lambda t: t['attempts'][0].update(commitments=7)),
        'round an int': edited(HONEST, lambda t: t.update(round=7)),
        'old format': {'round': 7, 'size': 5, 'commitments': 1, 'nonces': [], 'seed': 0, 'committee': {}},
        'committee of dicts': edited(HONEST, lambda t: t.update(committee=[{}])),
        'requested a float': edited(HONEST, lambda t: t.update(requested=5.0)),
        'a huge number': edited(HONEST, lambda t: t.update(requested=10 ** 400)),
        'a summary with a list as its transcript': {'stats': {'committee': []}},
    }
    for name, document in cases.items():
        (tmp_path / 't.json').write_text(json.dumps(document))
        result = cli('verify-committee', tmp_path / 't.json', '--registry', registry)
        assert result.returncode == 2 and ERROR_LINE.match(result.stderr), (name, result.stderr)
    for raw in ('[' * 100_000, '{"a":' * 100_000, '1' * 5000, '\xff\xfe', '', 'nan'):
        (tmp_path / 't.json').write_bytes(raw.encode('latin-1'))
        result = cli('verify-committee', tmp_path / 't.json', '--registry', registry)
        assert result.returncode == 2 and ERROR_LINE.match(result.stderr), (raw[:10], result.stderr)
    (tmp_path / 't.json').write_text(json.dumps(HONEST))
    os.chmod(tmp_path / 't.json', 0o644)
    assert 'verified against' in cli('verify-committee', tmp_path / 't.json', '--registry', registry,
                                     check=True).stdout
    for args, message in (((), 'give --registry FILE'), (('--registry', tmp_path / 'none.json'), 'registry'),
                          (('--registry', tmp_path / 't.json'), 'expected {peer'),
                          (('--registry', registry, '--round', 'r2'), 'of round r1, not r2')):
        result = cli('verify-committee', tmp_path / 't.json', *args)
        assert result.returncode == 2 and ERROR_LINE.match(result.stderr) and message in result.stderr, result.stderr
    os.chmod(registry, 0o666)  # a registry another local user could have rewritten is not trusted
    result = cli('verify-committee', tmp_path / 't.json', '--registry', registry)
    assert result.returncode == 2 and 'writable by group or others' in result.stderr


def test_verify_committee_refuses_a_ground_transcript_as_a_real_process(tmp_path):
    """`python -m mpc_market verify-committee` on the review's ground transcript, against the
    community's registry.json from `keys participants`: exit 2 and one line, no traceback."""
    keyfiles.create_participants(str(tmp_path / 'keys'), COMMUNITY)
    private = {p: keyfiles.load_participant_key(str(tmp_path / 'keys'), p) for p in COMMUNITY}
    ground, _ = ground_transcript('r1', COMMUNITY, {p: private[p] for p in COALITION}, random.Random(1512))
    (tmp_path / 'ground.json').write_text(json.dumps(ground))
    honest = committee.draw('r1', COMMUNITY, keys=private)
    (tmp_path / 'honest.json').write_text(json.dumps({'stats': {'committee': honest}}))

    def run(name):
        return subprocess.run([sys.executable, '-m', 'mpc_market', 'verify-committee', str(tmp_path / name),
                               '--registry', str(tmp_path / 'keys' / 'registry.json')], capture_output=True,
                              text=True, cwd=REPO, timeout=60)
    refused = run('ground.json')
    assert refused.returncode == 2 and ERROR_LINE.match(refused.stderr), refused.stderr
    assert "transcript's key of h04 is not its key in the registry you hold" in refused.stderr
    accepted = run('honest.json')
    assert accepted.returncode == 0 and 'verified against' in accepted.stdout, accepted.stderr


# -- S1 runs --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_s1_with_17_peers_runs_on_a_drawn_committee_and_equals_the_reference(tmp_path):
    book = book_of(random_orders(random.Random(17), 17), SMALL)
    keyfiles.create_participants(str(tmp_path), book.participants)  # every peer signs with its registered key
    result = clear_peers(book, timeout=300, keys_dir=str(tmp_path))
    plain = clear_plain(book)
    assert result.slots == plain.slots and result.rows == plain.rows
    registry = committee.load_registry(str(tmp_path / 'registry.json'))
    assert result.stats['nodes'] == 5 and committee.verify(result.stats['committee'], registry) == \
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
    summary = json.loads((tmp_path / 'r' / 'summary.json').read_text())
    # a local run plays every peer with keys of its own: checked against them, it is consistent
    write_registry(tmp_path / 'own.json', summary['stats']['committee'])
    verified = cli('verify-committee', str(tmp_path / 'r' / 'summary.json'), '--registry', tmp_path / 'own.json',
                   check=True).stdout
    assert 'verified' in verified and '12 peers' in verified
    summary['stats']['committee']['committee'].reverse()
    (tmp_path / 'forged.json').write_text(json.dumps(summary))
    forged = cli('verify-committee', str(tmp_path / 'forged.json'), '--registry', tmp_path / 'own.json')
    assert forged.returncode == 2 and 'forged.json:1: committee:' in forged.stderr
    assert 'Traceback' not in forged.stderr
    cli('clear', *common, '--out', str(tmp_path / 'local'), '--engine', 'plain', check=True)
    no_lottery = cli('verify-committee', str(tmp_path / 'local' / 'summary.json'), '--registry', tmp_path / 'own.json')
    assert no_lottery.returncode == 2 and 'no committee lottery transcript in this file' in no_lottery.stderr
    wrong_mode = cli('clear', *common, '--out', str(tmp_path / 'y'), '--committee', '3')
    assert wrong_mode.returncode == 2 and 'committee' in wrong_mode.stderr
