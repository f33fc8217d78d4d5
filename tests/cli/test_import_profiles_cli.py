"""`mpc-market import profiles` and `generate --profiles` on the command line (issue 24): a series imported
from each supported format, cleared and settled, gives the same bills as the same data written as orders and
readings by hand (plain engine, and once under MPC); DST days; one-line refusals that write nothing; the docs'
worked example as written."""

import datetime
import importlib.util
import os
import re
import subprocess
import sys
import zoneinfo

import pytest

from mpc_market.market.config import load_config

from helpers import REPO, cli, read_rows

MARKET = ('[market]\nprice_floor = 0.047\nprice_ceiling = 0.139\ntick = 0.001\n'
          'start = 2026-06-17T00:00:00+02:00\nslot_minutes = 15\ntimezone = "Europe/Berlin"\n')
START = datetime.datetime(2026, 6, 16, 22, tzinfo=datetime.UTC)
NETS = {'h1': [250, -500, 125, 0], 'h2': [-250, 300, -75, 100], 'h3': [500, 200, -300, -100]}  # Wh per slot
BUY, SELL = '0.116', '0.070'   # the default bidding rule on 0.047..0.139: a quarter of the band inside


def at(slot, minutes=0, offset=None):
    """The instant of a slot (plus minutes), as ISO text: UTC with Z, or in a fixed offset."""
    instant = START + datetime.timedelta(minutes=15 * slot + minutes)
    if offset is None:
        return instant.strftime('%Y-%m-%dT%H:%M:%SZ')
    return instant.astimezone(datetime.timezone(datetime.timedelta(hours=offset))).isoformat()


def by_hand(directory, nets):
    """orders.csv and readings.csv written by hand from the nets: one order per slot with a net, the readings
    the nets themselves."""
    directory.mkdir()
    orders = ['participant,slot,side,energy_wh,limit_price']
    readings = ['participant,slot,net_wh']
    for name, slots in sorted(nets.items()):
        for slot, wh in enumerate(slots):
            readings.append(f'{name},{slot},{wh}')
            if wh:
                orders.append(f'{name},{slot},{"buy" if wh > 0 else "sell"},{abs(wh)},{BUY if wh > 0 else SELL}')
    (directory / 'orders.csv').write_text('\n'.join(orders) + '\n')
    (directory / 'readings.csv').write_text('\n'.join(readings) + '\n')


def gsy_hhmm(directory):
    directory.mkdir()
    for name, slots in NETS.items():
        rows = ''.join(f'00:{15 * s:02d};{4 * wh}\n' for s, wh in enumerate(slots))   # Wh in 15 min -> W
        (directory / f'{name}.csv').write_text('INTERVAL;POWER(W)\n' + rows)
    return sorted(str(p) for p in directory.iterdir())


def gsy_datetimes(directory):
    directory.mkdir()
    for name, slots in NETS.items():  # gsy-e's second form, comma-separated, no offset: UTC
        rows = ''.join(f'{at(s)[:16]},{4 * wh}.0\n' for s, wh in enumerate(slots))
        (directory / f'{name}.csv').write_text('INTERVAL,POWER(W)\n' + rows)
    return sorted(str(p) for p in directory.iterdir())


def gsy_load_and_pv(directory):
    """gsy-e's Load and PV profiles, both positive: the PV files are given with --pv."""
    (directory / 'load').mkdir(parents=True)
    (directory / 'pv').mkdir()
    for name, slots in NETS.items():
        for kind, sign in (('load', 1), ('pv', -1)):
            rows = ''.join(f'00:{15 * s:02d};{max(0, sign * 4 * wh)}\n' for s, wh in enumerate(slots))
            (directory / kind / f'{name}.csv').write_text('INTERVAL;POWER(W)\n' + rows)
    loads = sorted(str(p) for p in (directory / 'load').iterdir())
    return loads + [arg for p in sorted((directory / 'pv').iterdir()) for arg in ('--pv', str(p))]


def long_power(directory):
    directory.mkdir()
    rows = [f'{name},{at(s, offset=2)},{4 * wh}' for s in range(4) for name, slots in NETS.items()
            for wh in [slots[s]]]   # sorted by time, then participant: as a meter database exports
    (directory / 'series.csv').write_text('participant,datetime,power_w\n' + '\n'.join(rows) + '\n')
    return [str(directory / 'series.csv')]


def long_energy_5min(directory):
    """Energy every 5 minutes, three values a slot that add up to its Wh."""
    directory.mkdir()
    rows = []
    for name, slots in NETS.items():
        for s, wh in enumerate(slots):
            for k, part in enumerate((wh // 3, wh // 3, wh - 2 * (wh // 3))):
                rows.append(f'{name},{at(s, 5 * k)},{part}')
    (directory / 'series.csv').write_text('participant,datetime,energy_wh\n' + '\n'.join(rows) + '\n')
    return [str(directory / 'series.csv')]


FORMATS = {'gsy-hhmm': gsy_hhmm, 'gsy-datetimes': gsy_datetimes, 'gsy-load-and-pv': gsy_load_and_pv,
           'long-power_w': long_power, 'long-energy_wh-5min': long_energy_5min}


def settle(tmp_path, orders, readings, out, engine='plain'):
    cli('settle', '--orders', orders, '--readings', readings, '--config', tmp_path / 'market.toml', '--out', out,
        '--engine', engine, '--quiet', check=True)
    return {name: read_rows(out / name) for name in ('bills.csv', 'participants.csv', 'public.csv')}


@pytest.mark.parametrize('form', FORMATS)
def test_each_format_imported_settles_like_the_same_data_by_hand(tmp_path, form):
    (tmp_path / 'market.toml').write_text(MARKET)
    by_hand(tmp_path / 'hand', NETS)
    files = FORMATS[form](tmp_path / 'series')
    done = cli('import', 'profiles', *files, '--config', tmp_path / 'market.toml', '--out', tmp_path / 'imported',
               check=True)
    assert done.stderr == '' and 'imported 3 participants onto slots 0-3 (2026-06-16T22:00:00Z to ' \
        '2026-06-16T23:00:00Z, 15-minute slots): 6 buys at 0.116 and 5 sells at 0.070 EUR/kWh' in done.stdout
    imported = read_rows(tmp_path / 'imported' / 'readings.csv')
    assert [(r['participant'], int(r['slot']), int(r['net_wh'])) for r in imported] == \
        [(n, s, wh) for n, slots in sorted(NETS.items()) for s, wh in enumerate(slots)]
    assert {r['slot_start'] for r in imported} == {at(s) for s in range(4)}
    hand = settle(tmp_path, tmp_path / 'hand' / 'orders.csv', tmp_path / 'hand' / 'readings.csv', tmp_path / 'b1')
    ours = settle(tmp_path, tmp_path / 'imported' / 'orders.csv', tmp_path / 'imported' / 'readings.csv',
                  tmp_path / 'b2')
    assert ours == hand and any(float(b['trade_amount']) for b in hand['bills.csv'])
    assert any(r['traded_wh'] not in ('', '0') for r in hand['public.csv'])   # the community did trade


@pytest.mark.slow
def test_an_imported_series_settles_under_mpc_like_the_hand_written_reference(tmp_path):
    (tmp_path / 'market.toml').write_text(MARKET)
    by_hand(tmp_path / 'hand', NETS)
    files = long_energy_5min(tmp_path / 'series')
    cli('import', 'profiles', *files, '--config', tmp_path / 'market.toml', '--out', tmp_path / 'imported',
        check=True)
    hand = settle(tmp_path, tmp_path / 'hand' / 'orders.csv', tmp_path / 'hand' / 'readings.csv', tmp_path / 'b1')
    ours = settle(tmp_path, tmp_path / 'imported' / 'orders.csv', tmp_path / 'imported' / 'readings.csv',
                  tmp_path / 'b2', engine='mpc')
    assert ours == hand


@pytest.mark.parametrize('day, quarter_hours', [(datetime.date(2026, 3, 29), 92), (datetime.date(2026, 10, 25), 100)])
def test_a_berlin_dst_day_imports_onto_its_92_or_100_slots_and_settles(tmp_path, day, quarter_hours):
    berlin = zoneinfo.ZoneInfo('Europe/Berlin')
    midnight = datetime.datetime.combine(day, datetime.time(), berlin)
    (tmp_path / 'market.toml').write_text(MARKET.replace('2026-06-17T00:00:00+02:00', midnight.isoformat()))
    config = load_config(str(tmp_path / 'market.toml'))
    rows = []
    for q in range(quarter_hours):
        local = (midnight.astimezone(datetime.UTC) + datetime.timedelta(minutes=15 * q)).astimezone(berlin)
        rows += [f'pv,{local.isoformat()},{-2000 if 40 <= q < 60 else 0}', f'home,{local.isoformat()},{400 + q}']
    (tmp_path / 'day.csv').write_text('participant,datetime,power_w\n' + '\n'.join(rows) + '\n')
    done = cli('import', 'profiles', tmp_path / 'day.csv', '--config', tmp_path / 'market.toml', '--out',
               tmp_path / 'c', check=True)
    assert f'slots 0-{quarter_hours - 1} ' in done.stdout
    readings = read_rows(tmp_path / 'c' / 'readings.csv')
    assert [int(r['slot']) for r in readings if r['participant'] == 'home'] == list(config.day_slots(day))
    last = (midnight + datetime.timedelta(days=1)).astimezone(datetime.UTC) - datetime.timedelta(minutes=15)
    assert readings[-1]['slot_start'] == last.strftime('%Y-%m-%dT%H:%M:%SZ')
    watts = sum(400 + q for q in range(quarter_hours))          # W for 15 minutes each: / 4 Wh, halves up
    assert sum(int(r['net_wh']) for r in readings if r['participant'] == 'home') == (watts + 2) // 4
    cli('settle', '--orders', tmp_path / 'c' / 'orders.csv', '--readings', tmp_path / 'c' / 'readings.csv',
        '--config', tmp_path / 'market.toml', '--out', tmp_path / 'bills', '--engine', 'plain', '--quiet', check=True)
    assert {b['participant'] for b in read_rows(tmp_path / 'bills' / 'bills.csv')} == {'home', 'pv'}


def test_capped_orders_warn_in_one_line_and_options_shape_the_orders(tmp_path):
    (tmp_path / 'market.toml').write_text(MARKET + 'max_order_wh = 200\n')
    files = gsy_hhmm(tmp_path / 'series')
    done = cli('import', 'profiles', *files, '--config', tmp_path / 'market.toml', '--out', tmp_path / 'c',
               '--buy-limit', '0.2', '--sell-limit', '-0.01', check=True)
    assert done.stderr == ("warning: 6 orders capped at the market's max_order_wh 200 Wh (first: h1 nets 250 Wh in "
                           "slot 0); their readings keep the whole net\n")
    orders = read_rows(tmp_path / 'c' / 'orders.csv')
    assert {o['limit_price'] for o in orders if o['side'] == 'buy'} == {'0.2'}
    assert {o['limit_price'] for o in orders if o['side'] == 'sell'} == {'-0.01'}
    assert max(int(o['energy_wh']) for o in orders) == 200
    quiet = cli('import', 'profiles', *files, '--config', tmp_path / 'market.toml', '--out', tmp_path / 'q',
                '--quiet', '--forecast-error', '15', '--seed', '4', check=True)
    assert quiet.stderr == '' and 'with a forecast error of 15 %' in quiet.stdout
    one = cli('import', 'profiles', files[0], '--participant', 'home-1', '--config', tmp_path / 'market.toml',
              '--out', tmp_path / 'one', '--quiet', check=True)
    assert 'imported 1 participant onto' in one.stdout
    assert {r['participant'] for r in read_rows(tmp_path / 'one' / 'readings.csv')} == {'home-1'}


@pytest.mark.parametrize('args, message', [
    (['bad.csv'], "error: {t}/bad.csv:3: POWER(W): '1,5' is not a number (a decimal point, not a comma)"),
    (['bad.csv', '--participant', 'a b'], "mpc-market import profiles: error: argument --participant: participant id "
                                          "'a b' is not"),
    (['good.csv', '--buy-limit', 'cheap'], "error: --buy-limit: must be a decimal from -10"),
    (['good.csv', '--forecast-error', '101'], "mpc-market import profiles: error: argument --forecast-error: '101' "
                                              "is too large"),
    ([], 'error: --pv: no series given'),
    (['long.csv', '--participant', 'x'], 'error: --participant: {t}/long.csv is a long CSV'),
    (['missing.csv'], 'error: {t}/missing.csv: No such file or directory'),
    (['good.csv', '--config', '{t}/nostart.toml'], "error: {t}/nostart.toml:1: start: the market file gives no start"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, args, message):
    (tmp_path / 'market.toml').write_text(MARKET)
    (tmp_path / 'nostart.toml').write_text(MARKET.split('start =')[0])
    (tmp_path / 'good.csv').write_text('INTERVAL;POWER(W)\n00:00;100\n')
    (tmp_path / 'bad.csv').write_text('INTERVAL;POWER(W)\n00:00;100\n00:15;1,5\n')
    (tmp_path / 'long.csv').write_text('participant,datetime,power_w\na,2026-06-16T22:00:00Z,1\n')
    argv = [str(tmp_path / a) if a.endswith('.csv') else a.format(t=tmp_path) for a in args]
    if '--config' not in argv:
        argv += ['--config', str(tmp_path / 'market.toml')]
    result = cli('import', 'profiles', *argv, '--out', tmp_path / 'out')
    assert result.returncode == 2 and result.stdout == ''
    lines = result.stderr.splitlines()
    if message.startswith('mpc-market'):   # argparse's own error line after its usage
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith(message.format(t=tmp_path)), result.stderr
    assert not (tmp_path / 'out').exists()


def test_the_docs_worked_example_runs_as_written(tmp_path):
    with open(os.path.join(REPO, 'docs', 'market.md')) as f:
        text = f.read()
    section = text[text.index('## Bringing your own series'):text.index('## The market rule')]
    script, documented = re.findall(r'```sh\n(.*?)```.*?```\n(participant,slot,slot_start.*?)```', section, re.S)[0]
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    run = subprocess.run(['bash', '-euo', 'pipefail', '-c', script], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / 'community' / 'orders.csv').read_text() == documented
    assert 'h01,1,2026-06-16T22:15:00Z,-350' in (tmp_path / 'community' / 'readings.csv').read_text()
    assert (tmp_path / 'bills' / 'bills.csv').exists()


HAVE_PROFILES = all(importlib.util.find_spec(name) is not None for name in ('demandlib', 'pvlib'))
needs_profiles = pytest.mark.skipif(not HAVE_PROFILES and not os.environ.get('MPC_MARKET_REQUIRE_PROFILES'),
                                    reason="the profiles extra is not installed (pip install -e '.[profiles]')")


@needs_profiles
def test_generate_profiles_at_a_location_over_days_time_stamps_its_market(tmp_path):
    out = cli('generate', '--participants', '30', '--profiles', '2026-06-17', '--days', '2', '--latitude', '40.7',
              '--longitude', '-74', '--out', tmp_path / 'ny', check=True).stdout
    assert 'slots 0-191 (192 x 15 min from 00:00 of 2026-06-17' in out and 'at 40.7 N -74 E' in out
    config = load_config(str(tmp_path / 'ny' / 'market.toml'))
    assert (config.start, config.slot_minutes, config.timezone, config.currency) == \
        (datetime.datetime(2026, 6, 17, 5, tzinfo=datetime.UTC), 15, 'Etc/GMT+5', 'EUR')
    assert config.day_slots(datetime.date(2026, 6, 18)) == range(96, 192)
    sells = [o for o in read_rows(tmp_path / 'ny' / 'orders.csv') if o['side'] == 'sell']
    export = {h: sum(int(o['energy_wh']) for o in sells if int(o['slot']) % 96 // 4 == h) for h in range(24)}
    assert max(export, key=export.get) in range(10, 15) and export[0] == export[23] == 0   # the sun at local noon
    default = cli('generate', '--participants', '5', '--slots', '4', '--profiles', '--out', tmp_path / 'de',
                  check=True)
    assert 'at 51 N 10 E' in default.stdout
    berlin = load_config(str(tmp_path / 'de' / 'market.toml'))
    assert (berlin.start, berlin.timezone) == (datetime.datetime(2026, 6, 16, 23, tzinfo=datetime.UTC), 'Etc/GMT-1')
    cli('clear', '--orders', tmp_path / 'de' / 'orders.csv', '--config', tmp_path / 'de' / 'market.toml', '--out',
        tmp_path / 'r', '--engine', 'plain', '--quiet', check=True)


def test_generate_options_that_do_not_go_together_are_one_line_errors(tmp_path):
    both = cli('generate', '--participants', '3', '--slots', '4', '--days', '1', '--out', tmp_path / 'a')
    assert both.returncode == 2 and both.stderr == 'error: --days: give --days or --slots, not both\n'
    lone = cli('generate', '--participants', '3', '--latitude', '48', '--out', tmp_path / 'b')
    assert lone.returncode == 2 and lone.stderr.startswith('error: --latitude: places the sun of --profiles')
    far = cli('generate', '--participants', '3', '--profiles', '--longitude', '181', '--out', tmp_path / 'c')
    assert far.returncode == 2 and "'181' is too large" in far.stderr
    assert not any((tmp_path / d).exists() for d in 'abc')
    plain = cli('generate', '--participants', '3', '--days', '1', '--out', tmp_path / 'd', check=True)
    assert 'slots 0-95 (96 x 15 min)' in plain.stdout
    assert 'start' not in (tmp_path / 'd' / 'market.toml').read_text()   # synthetic shapes: bare slots, as before
