"""Grid statistics without a network: packing, Paillier with DJN randomness, the aggregator's
checks and cohort rule, decryption against the plaintext reference, noise, key files, the CLI."""

import base64
import json
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpc_market.common import keys
from mpc_market.common.errors import BadParameter, InputError, Refused
from mpc_market.net.server import status_of
from mpc_market.stats import dp, paillier
from mpc_market.stats.aggregate import Aggregator, plan_release
from mpc_market.stats.packing import Layout
from mpc_market.stats.reference import plain_totals
from mpc_market.stats.release import decrypt_bundle
from mpc_market.stats.submission import EncryptedDay, encrypt_day

from helpers import cli, run_examples

DAY = '2026-11-20'
SLOTS = 4
MAX_WH = 1000
# F1: 6 meters, F2: 5 (exactly the cohort), F3: 3 (held back). Zones: Z1 = F1 + F3, Z2 = F2.
FEEDERS = {**{f'a{i}': ('F1', 'Z1') for i in range(6)}, **{f'b{i}': ('F2', 'Z2') for i in range(5)},
           **{f'c{i}': ('F3', 'Z1') for i in range(3)}}


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """Keys of 14 meters (+ one unmapped), a DSO (feeder) and a TSO (zone) key with a small layout."""
    root = tmp_path_factory.mktemp('stats')
    keys.create_participants(str(root), sorted(FEEDERS) + ['stranger'])
    dso, dso_private = paillier.generate('dso', 'feeder', 2048, SLOTS, MAX_WH, 100, 4)
    tso, tso_private = paillier.generate('tso', 'zone', 2048, SLOTS, MAX_WH, 100, 4)
    return {'root': str(root), 'registry': keys.load_registry(str(root / 'registry.json')),
            'dso': dso, 'tso': tso, 'private': {dso.key_id: dso_private, tso.key_id: tso_private}}


def meter_key(world, meter):
    return keys.load_participant_key(world['root'], meter)


def random_days(rng, meters, layout, extreme=False):
    values = lambda: MAX_WH if extreme else rng.choice((0, 1, MAX_WH, rng.randint(0, MAX_WH)))  # noqa: E731
    return {m: [values() for _ in range(layout.values)] for m in meters}


def submit_all(world, days, aggregator, day=DAY):
    subs = {}
    for meter, values in days.items():
        subs[meter] = encrypt_day(meter, day, FEEDERS[meter][0], values, [world['dso'], world['tso']],
                                  meter_key(world, meter))
        aggregator.accept(subs[meter])
    return subs


def bundle_file(tmp_path, bundle):
    path = tmp_path / f'{bundle["key_name"]}.json'
    path.write_text(json.dumps(bundle))
    return str(path)


# -- packing ------------------------------------------------------------------------------------
@settings(max_examples=run_examples(200), deadline=None)
@given(st.integers(1, 96), st.integers(1, 1 << 20), st.integers(2, 1 << 20), st.integers(0, 6), st.data())
def test_packing_round_trip(slots, max_wh, max_meters, guard, data):
    layout = Layout(slots, max_wh, max_meters, guard, 2048)
    layout.check()
    values = data.draw(st.lists(st.integers(0, max_wh), min_size=layout.values, max_size=layout.values))
    plaintexts = layout.pack(values)
    assert len(plaintexts) == layout.ciphertexts and all(p < 1 << 2047 for p in plaintexts)
    assert layout.unpack(plaintexts) == (values, False)


def test_sum_of_max_meters_at_maximum_cannot_carry():
    """max_meters meter-days, every field at max_reading_wh, added as integers: fields stay exact."""
    layout = Layout(96, 65535, 1_000_000, 0, 2048)
    one = layout.pack([65535] * layout.values)
    total = [p * layout.max_meters for p in one]        # = the packed sum of max_meters copies
    assert layout.unpack(total) == ([65535 * 1_000_000] * layout.values, False)
    assert layout.field_bits == (65535 * 1_000_000).bit_length()


def test_layout_rejects_values_that_do_not_fit():
    layout = Layout(2, 10, 2, 0, 2048)
    with pytest.raises(BadParameter, match='does not fit a'):
        layout.pack([0, 0, 0, 1 << layout.field_bits])
    with pytest.raises(BadParameter, match='does not fit a'):
        layout.pack([0, 0, 0, -1])
    with pytest.raises(BadParameter, match='5 values for a layout of 4'):
        layout.pack([0] * 5)
    with pytest.raises(BadParameter, match='max_meters >= 2'):
        Layout(1, 1, 1, 0, 2048).check()
    with pytest.raises(BadParameter, match='does not fit a 8-bit modulus'):
        Layout(1, 1000, 2, 0, 8).check()


# -- Paillier -----------------------------------------------------------------------------------
def test_djn_and_standard_ciphertexts_decrypt_and_add(world):
    dso, private = world['dso'], world['private'][world['dso'].key_id]
    a, b = 123456789, 987654321
    for standard in (False, True):
        ca, cb = dso.encrypt(a, standard), dso.encrypt(b, standard)
        assert private.decrypt(ca) == a and private.decrypt(cb) == b
        assert private.decrypt(ca * cb % dso.nsquare) == a + b
    assert dso.encrypt(5) != dso.encrypt(5)           # randomized
    assert dso.valid_ciphertext(dso.encrypt(0))
    assert not dso.valid_ciphertext(0) and not dso.valid_ciphertext(dso.nsquare) and not dso.valid_ciphertext(dso.n)
    for plaintext in (-1, dso.n):
        with pytest.raises(BadParameter, match='plaintext out of range'):
            dso.encrypt(plaintext)


def test_3072_bit_keys_work(tmp_path):
    public, private = paillier.generate('tso', 'zone', 3072, 96, 65535, 1_000_000, 4)
    assert public.bits == 3072 and public.layout.ciphertexts == 3   # 76 fields of 40 bits per plaintext
    pub_path, key_path = paillier.write_key_pair(str(tmp_path), public, private)
    public, private = paillier.load_public(pub_path), paillier.load_private(key_path)
    rng = random.Random(3072)
    days = [[rng.randint(0, 65535) for _ in range(192)] for _ in range(5)]
    products = [1] * public.layout.ciphertexts
    for values in days:
        public.add(products, public.encrypt_values(values))
    sums = [sum(col) for col in zip(*days, strict=True)]
    assert public.layout.unpack([private.decrypt(c) for c in products]) == (sums, False)


def test_key_files_round_trip_and_tampering(tmp_path, world):
    dso, private = world['dso'], world['private'][world['dso'].key_id]
    pub_path, key_path = paillier.write_key_pair(str(tmp_path), dso, private)
    assert oct(os.stat(key_path).st_mode & 0o777) == '0o600'
    assert 'p' not in json.load(open(pub_path)) and paillier.load_public(pub_path).key_id == dso.key_id
    assert paillier.load_private(key_path).public.key_id == dso.key_id
    with pytest.raises(InputError, match='refusing to overwrite'):
        paillier.write_key_pair(str(tmp_path), dso, private)
    doc = json.load(open(pub_path))
    doc['max_meters'] = 1000                                # a different layout: not the same key
    open(pub_path, 'w').write(json.dumps(doc, indent=1))
    with pytest.raises(InputError, match='key_id') as exc:
        paillier.load_public(pub_path)
    assert exc.value.field == 'key_id'
    doc = json.load(open(key_path))
    doc['q'] = format(int(doc['q'], 16) + 2, 'x')
    os.chmod(key_path, 0o600)
    open(key_path, 'w').write(json.dumps(doc))
    with pytest.raises(InputError, match='p \\* q'):
        paillier.load_private(key_path)
    with pytest.raises(InputError, match='private key file'):
        paillier.load_private(pub_path)
    with pytest.raises(BadParameter, match='too small'):
        paillier.generate('x', 'feeder', 1024)


# -- aggregation against the plaintext reference --------------------------------------------------
@pytest.mark.parametrize('seed', [1, 2, 'extreme'])
def test_decrypted_aggregates_equal_the_plaintext_reference(world, tmp_path, seed):
    rng = random.Random(seed)
    dso, tso = world['dso'], world['tso']
    days = random_days(rng, sorted(FEEDERS), dso.layout, extreme=seed == 'extreme')
    aggregator = Aggregator([dso, tso], world['registry'], FEEDERS, DAY)
    subs = submit_all(world, days, aggregator)
    bundles = aggregator.release()
    for key in (dso, tso):
        bundle, totals = decrypt_bundle(world['private'][key.key_id], bundle_file(tmp_path, bundles[key.key_id]))
        assert totals == plain_totals(days, FEEDERS, 5, key.level, key.layout)
    # the small feeder F3 is held back from the DSO and left out of zone Z1 as well
    assert [g['name'] for g in bundles[dso.key_id]['groups']] == ['F1', 'F2']
    assert bundles[dso.key_id]['refused'][0]['feeder'] == 'F3'
    assert {g['name']: g['meters'] for g in bundles[tso.key_id]['groups']} == {'Z1': 6, 'Z2': 5}
    # no individual ciphertext leaves the aggregator
    sent = {c for s in subs.values() for _, cs in s.blocks for c in cs}
    released = {int.from_bytes(base64.b64decode(c), 'big') for b in bundles.values() for g in b['groups']
                for c in g['ciphertexts']}
    assert not sent & released
    text = json.dumps(bundles)
    sent_b64 = {c for s in subs.values() for cs in json.loads(s.to_json())['keys'].values() for c in cs}
    assert len(sent_b64) == len(sent) and not any(c in text for c in sent_b64)


def test_one_meter_and_empty_groups(world):
    aggregator = Aggregator([world['dso'], world['tso']], world['registry'], FEEDERS, DAY, min_cohort=2)
    assert all(not b['groups'] for b in aggregator.release().values())      # nobody submitted
    submit_all(world, random_days(random.Random(0), ['a0'], world['dso'].layout), aggregator)
    bundles = aggregator.release()
    assert all(not b['groups'] for b in bundles.values())                    # one meter is never released
    assert bundles[world['dso'].key_id]['refused'] == [
        {'feeder': 'F1', 'zone': 'Z1', 'meters': 1, 'reason': '1 meters, below the minimum cohort of 2'}]
    with pytest.raises(BadParameter, match='at least 2'):
        Aggregator([world['dso']], world['registry'], FEEDERS, DAY, min_cohort=1)
    with pytest.raises(BadParameter, match='each operator key once'):
        Aggregator([world['dso'], world['dso']], world['registry'], FEEDERS, DAY)


def test_operator_refuses_groups_below_its_own_minimum(world, tmp_path):
    """An aggregator configured with a smaller cohort (or lying about it) gets no decryption."""
    aggregator = Aggregator([world['dso']], world['registry'], FEEDERS, DAY, min_cohort=3)
    for meter in ('c0', 'c1', 'c2'):
        aggregator.accept(encrypt_day(meter, DAY, 'F3', [1] * world['dso'].layout.values, [world['dso']],
                                      meter_key(world, meter)))
    path = bundle_file(tmp_path, aggregator.release()[world['dso'].key_id])
    bundle, totals = decrypt_bundle(world['private'][world['dso'].key_id], path, min_cohort=5)
    assert totals == [] and 'outside 5' in bundle['refused_at_decryption'][0]['reason']
    _, totals = decrypt_bundle(world['private'][world['dso'].key_id], path, min_cohort=3)
    assert totals[0].imports == [3] * SLOTS


def test_groups_above_the_layout_limit_are_refused():
    plan = plan_release([f'm{i}' for i in range(7)], {f'm{i}': ('F', 'Z') for i in range(7)}, 5, 6)
    assert not plan.feeders and 'max_meters' in plan.refused[0]['reason']
    feeders = {f'm{i}': (f'F{i // 5}', 'Z') for i in range(10)}        # two feeders of 5, one zone of 10
    plan = plan_release(feeders, feeders, 5, 8)
    assert [g[0] for g in plan.groups('feeder')] == ['F0', 'F1'] and plan.groups('zone') == []
    assert plan.refusals('zone')[-1] == {'zone': 'Z', 'meters': 10, 'reason': "10 meters, above the key layout's "
                                         'max_meters 8'}


# -- rejections ---------------------------------------------------------------------------------
def tampered(sub, **changes):
    return EncryptedDay(**{'meter': sub.meter, 'day': sub.day, 'feeder': sub.feeder, 'blocks': sub.blocks,
                           'signature': sub.signature} | changes)


def test_rejections(world):
    dso, tso = world['dso'], world['tso']
    aggregator = Aggregator([dso, tso], world['registry'], FEEDERS, DAY)
    values = [1] * dso.layout.values
    good = encrypt_day('a0', DAY, 'F1', values, [dso, tso], meter_key(world, 'a0'))

    def rejected(sub, code, match):
        with pytest.raises(Refused, match=match) as exc:
            aggregator.accept(sub)
        assert status_of(exc.value).name == code  # the status the aggregator's servicer answers with

    def resigned(meter='a0', **changes):
        return tampered(good, meter=meter, **changes).signed(meter_key(world, meter))

    rejected(tampered(good, meter='nobody'), 'UNAUTHENTICATED', 'no valid signature of a registered meter$')
    rejected(encrypt_day('stranger', DAY, 'F1', values, [dso, tso], meter_key(world, 'stranger')),
             'NOT_FOUND', 'not in the feeder map')
    rejected(tampered(good, feeder='F2'), 'UNAUTHENTICATED', 'no valid signature')   # moved to another feeder
    rejected(tampered(good, signature=meter_key(world, 'a1').sign(good.canonical())), 'UNAUTHENTICATED',
             'no valid signature')
    blocks = dict(good.blocks)
    swapped = tuple(sorted((k, (cs[0] * cs[0] % dso.nsquare,) + cs[1:]) for k, cs in blocks.items()))
    rejected(tampered(good, blocks=swapped), 'UNAUTHENTICATED', 'no valid signature')  # ciphertext changed in transit
    rejected(resigned(day='2026-11-19'), 'FAILED_PRECONDITION', 'day 2026-11-19')
    rejected(resigned(feeder='F2'), 'INVALID_ARGUMENT', 'is on feeder F1')
    rejected(resigned(blocks=tuple((k, cs) for k, cs in good.blocks if k == dso.key_id)), 'INVALID_ARGUMENT',
             'no ciphertexts under key tso')
    rejected(resigned(blocks=(('f' * 32, (5,)),)), 'INVALID_ARGUMENT', 'no ciphertexts under key')  # foreign key only
    rejected(resigned(blocks=tuple((k, cs[:-1]) for k, cs in good.blocks)), 'INVALID_ARGUMENT', 'layout has')
    for bad in (0, dso.n, dso.nsquare, dso.nsquare + 1):                                # not in Z*_{n^2}
        block = tuple((k, (bad,) + cs[1:]) if k == dso.key_id else (k, cs) for k, cs in good.blocks)
        rejected(resigned(blocks=block), 'OUT_OF_RANGE', 'not a ciphertext of key dso')
    Aggregator([dso], world['registry'], FEEDERS, DAY).accept(good)       # the TSO block is another aggregator's
    aggregator.accept(good)
    rejected(encrypt_day('a0', DAY, 'F1', values, [dso, tso], meter_key(world, 'a0')), 'ALREADY_EXISTS', 'already')
    assert list(aggregator.accepted) == ['a0'] and aggregator.accepted['a0'] is good


def test_out_of_range_plaintext_is_refused_at_decryption_alone(world, tmp_path):
    """A meter that encrypts a value above max_reading_wh would spill into other fields: its group
    is refused, and only its group: every other feeder of the day is still released."""
    dso = world['dso']
    aggregator = Aggregator([dso], world['registry'], FEEDERS, DAY)
    for i in range(5):
        plaintexts = dso.layout.pack([1] * dso.layout.values)
        if i == 0:
            plaintexts[-1] += 1 << (dso.layout.field_bits * dso.layout.fields_per_ciphertext)   # above the last field
        sub = EncryptedDay(f'b{i}', DAY, 'F2', ((dso.key_id, tuple(dso.encrypt(p) for p in plaintexts)),))
        aggregator.accept(sub.signed(meter_key(world, f'b{i}')))
    for i in range(6):
        aggregator.accept(encrypt_day(f'a{i}', DAY, 'F1', [2] * dso.layout.values, [dso], meter_key(world, f'a{i}')))
    path = bundle_file(tmp_path, aggregator.release()[dso.key_id])
    bundle, totals = decrypt_bundle(world['private'][dso.key_id], path)
    assert [r['name'] for r in bundle['refused_at_decryption']] == ['F2']
    assert 'out-of-range value' in bundle['refused_at_decryption'][0]['reason']
    assert [(g.name, g.imports) for g in totals] == [('F1', [12] * SLOTS)]
    with pytest.raises(InputError, match='aggregates are under key'):
        decrypt_bundle(world['private'][world['tso'].key_id], path)


def test_residual_risk_a_negative_reading_is_not_detected(world, tmp_path):
    """Documented in SECURITY.md: without range proofs, a meter encrypting n - x subtracts x from
    its feeder's totals and nothing can tell. This test pins that limitation so the claim stays true."""
    dso = world['dso']
    aggregator = Aggregator([dso], world['registry'], FEEDERS, DAY)
    for i in range(5):
        plaintexts = dso.layout.pack([10] * dso.layout.values)
        if i == 0:
            plaintexts = [(p - dso.layout.pack([30] * dso.layout.values)[k]) % dso.n for k, p in enumerate(plaintexts)]
        sub = EncryptedDay(f'b{i}', DAY, 'F2', ((dso.key_id, tuple(dso.encrypt(p) for p in plaintexts)),))
        aggregator.accept(sub.signed(meter_key(world, f'b{i}')))
    bundle, totals = decrypt_bundle(world['private'][dso.key_id],
                                    bundle_file(tmp_path, aggregator.release()[dso.key_id]))
    assert bundle['refused_at_decryption'] == [] and totals[0].imports == [20] * SLOTS   # 50 - 30: undetected


# -- differential privacy ---------------------------------------------------------------------------
def test_noise_is_bounded_and_removed_by_the_bias(world, tmp_path):
    dso = world['dso']
    days = random_days(random.Random(7), sorted(FEEDERS), dso.layout)
    aggregator = Aggregator([dso], world['registry'], FEEDERS, DAY)
    submit_all_dso = {m: encrypt_day(m, DAY, FEEDERS[m][0], v, [dso], meter_key(world, m)) for m, v in days.items()}
    for sub in submit_all_dso.values():
        aggregator.accept(sub)
    noise = dp.Noise(dp.parse_epsilon('2'), MAX_WH)
    bundle = aggregator.release(noise)[dso.key_id]
    assert bundle['noise']['epsilon_per_meter_day'] == str(2 * SLOTS * 2)
    _, noisy = decrypt_bundle(world['private'][dso.key_id], bundle_file(tmp_path, bundle))
    exact = plain_totals(days, FEEDERS, 5, 'feeder', dso.layout)
    deltas = [n - e for g, h in zip(noisy, exact, strict=True) for n,
              e in zip(g.imports + g.exports, h.imports + h.exports, strict=True)]
    assert all(abs(d) <= noise.bias for d in deltas) and any(deltas)
    with pytest.raises(BadParameter, match='guard_bits'):
        aggregator.release(dp.Noise(dp.parse_epsilon('0.0001'), MAX_WH))
    with pytest.raises(BadParameter, match='epsilon must be > 0'):
        dp.parse_epsilon('0')


def test_discrete_laplace_matches_its_distribution():
    from fractions import Fraction
    scale = Fraction(5, 2)
    samples = [dp.discrete_laplace(scale) for _ in range(20000)]
    q = 2.718281828459045 ** (-1 / 2.5)
    expected_abs = 2 * q / (1 - q * q)                     # E|Y| of the discrete Laplace
    assert abs(sum(samples) / len(samples)) < 0.1
    assert abs(sum(map(abs, samples)) / len(samples) - expected_abs) < 0.1
    p_zero = (1 - q) / (1 + q)
    assert abs(samples.count(0) / len(samples) - p_zero) < 0.015


# -- command line -------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def cli_world(tmp_path_factory):
    root = tmp_path_factory.mktemp('stats-cli')
    (root / 'feeders.csv').write_text('participant,feeder,zone\n' + ''.join(
        f'{m},{f},{z}\n' for m, (f, z) in sorted(FEEDERS.items())))
    rng = random.Random(11)
    lines = ['participant,slot,import_wh,export_wh']
    plain = {}
    for meter in sorted(FEEDERS):
        plain[meter] = [0] * 192
        for slot in range(96):
            if rng.random() < 0.1:
                continue                                   # not reported: 0 Wh both ways
            imp, exp = rng.choice((0, 65535, rng.randint(0, 65535))), rng.randint(0, 3000)
            plain[meter][slot], plain[meter][96 + slot] = imp, exp
            lines.append(f'{meter},{slot},{imp},{exp}')
    (root / 'readings.csv').write_text('\n'.join(lines) + '\n')
    keys.create_participants(str(root / 'keys'), sorted(FEEDERS))
    for name, level in (('dso', 'feeder'), ('tso', 'zone')):
        proc = cli('stats', 'keygen', '--out', root / 'op', '--name', name, '--level', level)
        assert proc.returncode == 0, proc.stderr
    proc = cli('stats', 'encrypt', '--readings', root / 'readings.csv', '--day', DAY, '--feeders', root / 'feeders.csv',
               '--pubkey', root / 'op/dso.pub.json', '--pubkey', root / 'op/tso.pub.json', '--keys', root / 'keys',
               '--out', root / 'days.jsonl')
    assert proc.returncode == 0, proc.stderr
    return root, plain


def test_cli_encrypt_aggregate_decrypt(cli_world):
    root, plain = cli_world
    proc = cli('stats', 'aggregate', '--submissions', root / 'days.jsonl', '--feeders', root / 'feeders.csv',
               '--registry', root / 'keys/registry.json', '--pubkey', root / 'op/dso.pub.json',
               '--pubkey', root / 'op/tso.pub.json', '--day', DAY, '--out', root / 'agg')
    assert proc.returncode == 0, proc.stderr
    assert 'held back: F3' in proc.stdout
    (root / 'public.csv').write_text('slot,price,traded_wh,residual_wh\n40,0.150,1234,0\n')
    for name, level in (('dso', 'feeder'), ('tso', 'zone')):
        proc = cli('stats', 'decrypt', '--key', root / f'op/{name}.key.json', '--aggregates',
                   root / f'agg/{name}-{DAY}.aggregates.json', '--public-results', root / 'public.csv',
                   '--out', root / name)
        assert proc.returncode == 0, proc.stderr
        rows = (root / name / f'{level}s-{DAY}.csv').read_text().splitlines()
        assert rows[0] == f'{level},slot,slot_start,meters,import_wh,export_wh,net_wh'
        layout = paillier.load_public(str(root / f'op/{name}.pub.json')).layout
        expected = plain_totals(plain, FEEDERS, 5, level, layout)
        want = [f'{g.name},{s},,{g.meters},{g.imports[s]},{g.exports[s]},{g.imports[s] - g.exports[s]}'
                for g in expected for s in range(96)]
        assert rows[1:] == want
        for g in expected:
            png = (root / name / f'{level}-{g.name}-{DAY}.png').read_bytes()
            assert png.startswith(b'\x89PNG')


@pytest.mark.parametrize('content, where', [
    ('participant,slot,import_wh,export_wh\na0,96,1,1\n', 'readings.csv:2: slot'),
    ('participant,slot,import_wh,export_wh\na0,1,-1,1\n', 'readings.csv:2: import_wh'),
    ('participant,slot,import_wh,export_wh\na0,1,65536,1\n', 'readings.csv:2: import_wh'),
    ('participant,slot,import_wh,export_wh\na0,1,1,1\na0,1,2,2\n', 'readings.csv:3: slot'),
    ('participant,slot,net_wh\na0,1,x\n', 'readings.csv:2: net_wh'),
    ('participant,slot,net_wh\nnobody,1,5\n', 'readings.csv:2: participant'),
])
def test_cli_bad_readings(cli_world, tmp_path, content, where):
    root, _ = cli_world
    (tmp_path / 'readings.csv').write_text(content)
    proc = cli('stats', 'encrypt', '--readings', tmp_path / 'readings.csv', '--day', DAY, '--feeders',
               root / 'feeders.csv', '--pubkey', root / 'op/dso.pub.json', '--keys', root / 'keys',
               '--out', tmp_path / 'out.jsonl')
    assert proc.returncode == 2 and where in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert 'Traceback' not in proc.stderr and not (tmp_path / 'out.jsonl').exists()


def test_cli_encrypt_refuses_an_unpinned_key(cli_world, tmp_path):
    root, _ = cli_world
    dso = paillier.load_public(str(root / 'op/dso.pub.json'))
    args = ['stats', 'encrypt', '--readings', root / 'readings.csv', '--day', DAY, '--feeders', root / 'feeders.csv',
            '--pubkey', root / 'op/dso.pub.json', '--pubkey', root / 'op/tso.pub.json', '--keys', root / 'keys',
            '--meter', 'a0', '--key-id', dso.key_id]
    proc = cli(*args, '--out', tmp_path / 'out.jsonl')
    assert proc.returncode == 2 and 'tso.pub.json:1: key_id' in proc.stderr and not (tmp_path / 'out.jsonl').exists()
    tso = paillier.load_public(str(root / 'op/tso.pub.json'))
    assert cli(*args, '--key-id', tso.key_id, '--out', tmp_path / 'out.jsonl').returncode == 0


def test_cli_bad_inputs(cli_world, tmp_path):
    root, _ = cli_world
    proc = cli('stats', 'keygen', '--out', tmp_path, '--bits', '1024')
    assert proc.returncode == 2 and 'too small' in proc.stderr and not os.listdir(tmp_path)
    lines = (root / 'days.jsonl').read_text().splitlines()
    (tmp_path / 'days.jsonl').write_text(lines[0] + '\n{"meter": \n')
    proc = cli('stats', 'aggregate', '--submissions', tmp_path / 'days.jsonl', '--feeders', root / 'feeders.csv',
               '--registry', root / 'keys/registry.json', '--pubkey', root / 'op/dso.pub.json',
               '--pubkey', root / 'op/tso.pub.json', '--day', DAY, '--out', tmp_path / 'agg')
    assert proc.returncode == 2 and 'days.jsonl:2: submission' in proc.stderr and not (tmp_path / 'agg').exists()
    proc = cli('stats', 'aggregate', '--submissions', root / 'days.jsonl', '--feeders', root / 'feeders.csv',
               '--registry', root / 'keys/registry.json', '--pubkey', root / 'op/dso.pub.json',
               '--pubkey', root / 'op/tso.pub.json', '--day', '2026-11-21', '--out', tmp_path / 'agg2')
    # every day is for 2026-11-20: all rejected, and a release of no group is not written (issue 22, problem 3)
    assert proc.returncode == 1 and 'nothing to release: 0 meter-days' in proc.stderr, proc.stderr
    assert 'readings for day 2026-11-20' in proc.stderr and not (tmp_path / 'agg2').exists()
