"""Communities from published profiles (the optional extra): BDEW H0 load and clear-sky PV."""

import datetime
import importlib.util
import os
import sys

import pytest

from mpc_market.market.generate import community

from helpers import cli, read_rows

# found, not imported: importing pvlib and demandlib (pandas, scipy) costs about a second of every
# collection; an installed extra that fails to import then fails its tests instead of skipping them
HAVE_PROFILES = all(importlib.util.find_spec(name) is not None for name in ('demandlib', 'pvlib'))

needs_profiles = pytest.mark.skipif(not HAVE_PROFILES and not os.environ.get('MPC_MARKET_REQUIRE_PROFILES'),
                                    reason="the profiles extra is not installed (pip install -e '.[profiles]')")


def net_by_hour(readings, hour):
    return sum(r['net_wh'] for r in readings if (r['slot'] % 96) // 4 == hour)


@needs_profiles
def test_summer_middays_export_and_winter_middays_import():
    _, summer = community(200, 96, 1, with_readings=True, profile_day=datetime.date(2026, 6, 17))
    _, winter = community(200, 96, 1, with_readings=True, profile_day=datetime.date(2026, 1, 14))
    assert net_by_hour(summer, 12) < 0 < net_by_hour(winter, 12)   # PV surplus only in summer
    assert net_by_hour(summer, 3) > 0 and net_by_hour(summer, 19) > 0  # nights and evenings import
    # the standard profile: a household of 2 uses 2,900 kWh a year, about 5-11 kWh on a day
    daily = sum(max(0, r['net_wh']) for r in winter) / 200 / 1000
    assert 5 < daily < 14, daily
    again = community(200, 96, 1, with_readings=True, profile_day=datetime.date(2026, 1, 14))[1]
    assert again == winter  # the same seed and day write the same community


@needs_profiles
@pytest.mark.slow
def test_generate_profiles_clears_under_mpc_like_the_reference(tmp_path):
    out = cli('generate', '--participants', '20', '--slots', '4', '--profiles', '--out', tmp_path, check=True).stdout
    assert 'BDEW H0 load and clear-sky PV' in out and '2026-06-17' in out
    common = ['--orders', tmp_path / 'orders.csv', '--config', tmp_path / 'market.toml', '--quiet']
    cli('clear', *common, '--out', tmp_path / 'mpc', check=True)
    cli('clear', *common, '--engine', 'plain', '--out', tmp_path / 'plain', check=True)
    assert read_rows(tmp_path / 'mpc' / 'participants.csv') == read_rows(tmp_path / 'plain' / 'participants.csv')
    assert read_rows(tmp_path / 'mpc' / 'public.csv') == read_rows(tmp_path / 'plain' / 'public.csv')


def test_profiles_without_the_extra_or_with_a_bad_day_are_one_line_errors(tmp_path, monkeypatch):
    bad = cli('generate', '--participants', '3', '--slots', '4', '--profiles', '2026-02-30', '--out', tmp_path / 'a')
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "error: --profiles: '2026-02-30' is not a day (YYYY-MM-DD)"
    monkeypatch.setitem(sys.modules, 'demandlib', None)  # as if the extra were not installed
    missing = cli('generate', '--participants', '3', '--slots', '4', '--profiles', '--out', tmp_path / 'b')
    assert missing.returncode == 2 and "pip install -e '.[profiles]'" in missing.stderr
    assert 'Traceback' not in missing.stderr and not (tmp_path / 'b').exists()  # nothing half-written

