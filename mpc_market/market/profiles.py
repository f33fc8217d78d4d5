"""Household load and PV from published profiles (the optional extra: ``pip install -e '.[profiles]'``).

Load: the BDEW H0 standard load profile, dynamised (demandlib's ``h0_dyn``: the German
electricity industry's household profile, 15-minute resolution, by season and weekday), scaled
to each household's annual consumption by household size. PV: clear-sky irradiance of the day
from pvlib (simplified Solis model, which needs no data files) at the profiles' location,
times each system's kWp and a performance ratio. Both packages compute locally: nothing is
downloaded, so this works offline once installed. The location (default 51 N 10 E, where the BDEW
profiles were measured) sets the sun and the profiles' clock: its mean standard time (UTC + the
longitude / 15 h, rounded; no daylight saving, like the profiles' own clock), which the generated
market file names as its timezone, with its start at 00:00 of the first day. The community's
randomness (household sizes, PV systems, cloudiness, the individual noise around the standard
profile) stays in ``generate.community``.
"""

import datetime
import math
import zoneinfo

import numpy as np

from ..common.days import parse_day as strict_day
from ..common.errors import BadParameter, InputError

LATITUDE, LONGITUDE = 51.0, 10.0          # central Germany, where the BDEW profiles were measured
ANNUAL_KWH_BY_SIZE = (1900, 2900, 3700, 4300, 5000)   # typical German households of 1..5 persons
PERFORMANCE_RATIO = 0.85
DEFAULT_DAY = '2026-06-17'                # a midsummer weekday: PV surplus at noon, evening peaks
INSTALL_HINT = "needs the optional extra: pip install -e '.[profiles]' (demandlib, pvlib)"


def parse_day(text, where='<command line>', line=0):
    try:
        return strict_day(text)
    except BadParameter:
        raise InputError(where, line, 'profiles', f'{str(text)[:40]!r} is not a day (YYYY-MM-DD)') from None


def _libraries():
    try:
        import pandas
        import pvlib
        from demandlib import bdew
    except ImportError:
        raise InputError('<command line>', 0, 'profiles', INSTALL_HINT) from None
    return pandas, pvlib, bdew


def clock(longitude: float) -> str:
    """The profiles' clock at a longitude: its mean standard time as an IANA zone without DST.

    Args:
        longitude: degrees east, -180..180.

    Returns:
        'UTC', or 'Etc/GMT-1' for UTC+01:00 (10 E) and 'Etc/GMT+5' for UTC-05:00 (74 W): the Etc
        zones' signs are POSIX's, inverted.
    """
    hours = math.floor(longitude / 15 + 0.5)
    return 'UTC' if hours == 0 else f'Etc/GMT{-hours:+d}'


def first_instant(first_day: datetime.date, longitude: float = LONGITUDE) -> datetime.datetime:
    """00:00 of first_day on the profiles' clock at a longitude: the start of slot 0.

    Args:
        first_day: the first day of the profiles.
        longitude: degrees east.

    Returns:
        The aware instant (its offset the clock's).
    """
    return datetime.datetime.combine(first_day, datetime.time(), zoneinfo.ZoneInfo(clock(longitude)))


def day_shapes(first_day, slot_ids, latitude=LATITUDE, longitude=LONGITUDE):
    """(H0 share of a year's consumption, clear-sky PV kW per kWp) for each slot id, counted in
    15-minute slots from 00:00 of first_day on the clock of the location (``clock``)."""
    pandas, pvlib, bdew = _libraries()
    timezone = clock(longitude)
    days = sorted({first_day + datetime.timedelta(days=int(s) // 96) for s in slot_ids})
    shares = {}
    for year in sorted({d.year for d in days}):
        profile = bdew.ElecSlp(year).get_profiles('h0_dyn')['h0_dyn']
        shares.update(zip(profile.index, profile.to_numpy(), strict=True))
    times = pandas.DatetimeIndex([pandas.Timestamp(first_day) + pandas.Timedelta(minutes=15 * int(s))
                                  for s in slot_ids])
    h0 = np.array([shares[t] for t in times])
    location = pvlib.location.Location(latitude, longitude, tz=timezone)
    middle = times.tz_localize(timezone) + pandas.Timedelta(minutes=7.5)  # the slot's mid-point
    ghi = location.get_clearsky(middle, model='simplified_solis')['ghi'].to_numpy()
    return h0, np.nan_to_num(ghi) / 1000 * PERFORMANCE_RATIO


def household_kw(size, h0_share):
    """Average kW per slot of each household (rows) by the H0 profile and its size (1..5)."""
    annual = np.array(ANNUAL_KWH_BY_SIZE)[size - 1]
    return annual[:, None] * h0_share[None, :] * 4   # kWh in 15 minutes -> kW
