"""Synthetic but realistic local-market communities: household load shapes, some PV.

Each household has a daily load curve (night base, morning and evening peaks, scaled by
household size) and about a third have rooftop PV (bell-shaped between 6:00 and 20:00 with
day-to-day cloudiness). In each 15-minute slot a household buys its net deficit or sells its
surplus, with a limit price drawn around its own willingness to pay or accept; a few limits lie
outside the retail band to exercise the "cannot trade locally" path. With a profile day, load
and PV come from published profiles instead (``profiles.py``, the optional extra).
"""

import os

import numpy as np

from ..common.errors import BadParameter
from ..common.limits import ROUND_SLOTS

SLOTS_PER_DAY = 96
# A written community takes about 580 bytes and 18 us per participant-slot (10,000 x 96: 560 MB, 18 s),
# so 1 M participant-slots stay near 0.6 GB; without a cap, --slots 1000000000 ran to 13 GB in 12 s.
MAX_SLOTS = ROUND_SLOTS
MAX_PARTICIPANTS = 100_000
MAX_SIZE = 1_000_000
MAX_ZONES = 100
MAX_ORDER_WH = 65535
DEFAULT_MARKET = {'price_floor': '0.047', 'price_ceiling': '0.139', 'tick': '0.001', 'max_order_wh': MAX_ORDER_WH}


def load_shape(hour):
    """Relative household load over the day (mean ~1)."""
    base = 0.45
    morning = 1.1 * np.exp(-((hour - 7.5) / 1.2) ** 2)
    evening = 1.9 * np.exp(-((hour - 19.0) / 2.0) ** 2)
    midday = 0.35 * np.exp(-((hour - 13.0) / 2.5) ** 2)
    return base + morning + evening + midday


def pv_shape(hour):
    return np.clip(np.cos((hour - 13.0) / 7.0 * np.pi / 2), 0, None) ** 2 * ((hour > 6) & (hour < 20))


def first_slot_and_stop(slots):
    """The slot ids a community of ``slots`` slots covers: whole days from slot 0, shorter runs
    centred on midday (slot 48), when PV sellers meet buyers."""
    first = 0 if slots >= SLOTS_PER_DAY else max(0, SLOTS_PER_DAY // 2 - slots // 2)
    return first, first + slots


def check_size(participants: int, slots: int) -> None:
    """Refuse a community larger than ``write_community`` writes, before anything is allocated.

    Args:
        participants: households.
        slots: 15-minute slots.

    Raises:
        BadParameter: naming ``participants`` or ``slots``: below 1, above ``MAX_PARTICIPANTS`` or
            ``MAX_SLOTS``, or more than ``MAX_SIZE`` participant-slots together.
    """
    for name, value, most in (('participants', participants, MAX_PARTICIPANTS), ('slots', slots, MAX_SLOTS)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
            raise BadParameter(name, f'{name} must be an integer in 1..{most}, got {value!r}')
    if participants * slots > MAX_SIZE:
        raise BadParameter('slots', f'{participants} participants x {slots} slots is more than {MAX_SIZE} '
                           'participant-slots')


def community(participants, slots, seed, with_readings=False, profile_day=None, location=None):
    """Orders as a list of dicts with the orders-CSV keys (and meter readings if asked).

    Readings are what the meters measured: the planned net plus a forecast error of ~15 %
    and ~30 Wh of noise, so some participants end up short and others long. profile_day (a
    datetime.date): load from the BDEW H0 profile and PV from clear-sky irradiance from that day
    on (market/profiles.py, the optional extra) instead of the built-in shapes, at location
    (latitude, longitude; default profiles.LATITUDE, LONGITUDE).
    """
    rng = np.random.default_rng(seed)
    slot_ids = np.arange(*first_slot_and_stop(slots))
    hours = (slot_ids % SLOTS_PER_DAY) * 0.25 + 0.125
    days = slot_ids // SLOTS_PER_DAY
    cloud = rng.uniform(0.35, 1.0, size=days.max() + 1)[days]
    size = rng.choice([1, 2, 3, 4, 5], p=[0.28, 0.34, 0.16, 0.15, 0.07], size=participants)
    avg_kw = 0.18 + 0.12 * size                                     # average load per household
    has_pv = rng.random(participants) < 0.35
    kwp = np.where(has_pv, rng.uniform(3.0, 9.0, participants), 0.0)
    has_ev = rng.random(participants) < 0.15
    buy_price, sell_price = willingness(rng, participants)
    width = len(str(participants - 1))
    orders = []
    if profile_day is None:
        load_kw, pv_per_kwp = avg_kw[:, None] * load_shape(hours)[None, :], pv_shape(hours)
    else:
        from .profiles import LATITUDE, LONGITUDE, day_shapes, household_kw
        h0_share, pv_per_kwp = day_shapes(profile_day, slot_ids, *(location or (LATITUDE, LONGITUDE)))
        load_kw = household_kw(size, h0_share)
    load = load_kw * rng.lognormal(0, 0.25, (participants, slots))
    ev = has_ev[:, None] * ((hours[None, :] > 18) & (hours[None, :] < 23)) * rng.uniform(0, 7.4, (participants, slots))
    pv = kwp[:, None] * pv_per_kwp[None, :] * cloud[None, :] * rng.uniform(0.85, 1.0, (participants, slots))
    net_wh = np.rint((load + ev - pv) * 250).astype(np.int64)      # kW over 15 min -> Wh
    error = rng.normal(1.0, 0.15, (participants, slots)) * (load + ev - pv) * 250 + rng.normal(0, 30, net_wh.shape)
    limit = DEFAULT_MARKET['max_order_wh']
    measured = np.clip(np.rint(error), -limit, limit).astype(np.int64)
    readings = []
    for p in range(participants):
        name = f'h{p:0{width}d}'
        for j, slot in enumerate(slot_ids):
            net = int(net_wh[p, j])
            if with_readings:
                readings.append({'participant': name, 'slot': int(slot), 'net_wh': int(measured[p, j])})
            order = bid(rng, name, int(slot), net, float(buy_price[p]), float(sell_price[p]))
            if order is not None:
                orders.append(order)
    return (orders, readings) if with_readings else orders


def willingness(rng: np.random.Generator, participants: int) -> tuple[np.ndarray, np.ndarray]:
    """Each household's willingness to pay and to accept per kWh, the centres of ``bid``'s limits.

    Args:
        rng: the community's generator (two draws of ``participants`` values, pay first).
        participants: households.

    Returns:
        (willingness to pay, willingness to accept), one value per household.
    """
    buy_price = rng.uniform(0.075, 0.139, participants)
    sell_price = rng.uniform(0.047, 0.11, participants)
    return buy_price, sell_price


def bid(rng: np.random.Generator, participant: str, slot: int, net_wh: int, pay: float,
        accept: float) -> dict[str, str | int] | None:
    """The generator's bidding rule: a slot's planned net position as one order (orders-CSV keys).

    A net import buys, a net export sells, its energy capped at ``max_order_wh``; under 5 Wh no
    order. The limit is the household's willingness (``pay`` or ``accept``) plus N(0, 0.006)
    noise, 80 % of limits on the 0.001 tick grid, and 1 % outside the retail band (0.03 for a buy,
    0.2 for a sell), so they can trade with the retailer only.

    Args:
        rng: the community's generator (three draws per order, none without one).
        participant: the household's name.
        slot: the slot.
        net_wh: planned net Wh (+ import, - export).
        pay: willingness to pay per kWh (buys).
        accept: willingness to accept per kWh (sells).

    Returns:
        The order as a dict, or None under 5 Wh.
    """
    if abs(net_wh) < 5:
        return None
    energy = min(abs(net_wh), MAX_ORDER_WH)
    side, centre = ('buy', pay) if net_wh > 0 else ('sell', accept)
    limit = centre + rng.normal(0, 0.006)
    if rng.random() < 0.01:
        limit = 0.03 if side == 'buy' else 0.2      # outside the band: retailer only
    if rng.random() < 0.8:
        limit = round(limit, 3)                       # most bid on the tick grid
    return {'participant': participant, 'slot': slot, 'side': side, 'energy_wh': energy,
            'limit_price': f'{max(limit, 0.0):.4f}'.rstrip('0').rstrip('.')}


def profile_time_keys(profile_day, location=None) -> str:
    """The [market] lines that time-stamp a profiles community's slots: currency, start (00:00 of
    profile_day on the profiles' clock at the location's longitude), slot_minutes and timezone.

    Args:
        profile_day: the first day (a datetime.date).
        location: (latitude, longitude), default the profiles' 51 N 10 E.

    Returns:
        TOML lines for the [market] table.
    """
    from .config import DEFAULT_CURRENCY
    from .profiles import LONGITUDE, clock, first_instant
    longitude = LONGITUDE if location is None else location[1]
    start = first_instant(profile_day, longitude)
    return (f'currency = "{DEFAULT_CURRENCY}"\n# slot 0 begins at 00:00 of {profile_day} on the profiles\' clock, the '
            f'location\'s standard time (UTC{start:%z}, no DST)\nstart = {start.isoformat()}\n'
            f'slot_minutes = 15\ntimezone = "{clock(longitude)}"\n')


def write_community(out_dir, participants, slots, seed, zones=0, network_fee='0.010', profile_day=None,
                    location=None):
    """Write orders.csv, readings.csv, feeders.csv and market.toml into out_dir; return their paths.

    zones > 0: a zoned market (communities of whole feeders): zones = true, the network fee and a
    [zones] table in market.toml, so a deployment can use it as is; orders.csv repeats the zone.
    profile_day, location: see ``community``; market.toml then time-stamps the slots
    (``profile_time_keys``). A size above ``check_size``'s or a fee off the tick grid is refused
    before anything is written."""
    import csv

    from .config import parse_config
    check_size(participants, slots)
    config_path = os.path.join(out_dir, 'market.toml')
    m = DEFAULT_MARKET
    market_text = ('# Local market: feed-in tariff (floor) and retail price (ceiling) in currency per kWh\n'
                   f'[market]\nprice_floor = {m["price_floor"]}\nprice_ceiling = {m["price_ceiling"]}\n'
                   f'tick = {m["tick"]}\nmax_order_wh = {m["max_order_wh"]}\n')
    if profile_day is not None:
        market_text += profile_time_keys(profile_day, location)
    if zones:
        market_text += ('# communities clear first, then trade across at a network fee per kWh\n'
                        f'zones = true\nnetwork_fee = {network_fee}\n')
    parse_config(config_path, market_text)
    orders, readings = community(participants, slots, seed, with_readings=True, profile_day=profile_day,
                                 location=location)
    os.makedirs(out_dir, exist_ok=True)
    names = sorted({r['participant'] for r in readings})
    feeders = feeder_map(names, zones)
    if zones:  # a deployment takes the zones from the market file only (participants' grid connections)
        market_text += zones_table(feeders)
        parse_config(config_path, market_text)
    for order in orders if zones else ():
        order['zone'] = feeders[order['participant']][1]
    orders_path = os.path.join(out_dir, 'orders.csv')
    readings_path = os.path.join(out_dir, 'readings.csv')
    with open(readings_path + '.tmp', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['participant', 'slot', 'net_wh'])
        writer.writeheader()
        writer.writerows(readings)
    os.replace(readings_path + '.tmp', readings_path)
    with open(orders_path + '.tmp', 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=['participant', 'slot', 'side', 'energy_wh', 'limit_price']
                                + (['zone'] if zones else []))
        writer.writeheader()
        writer.writerows(orders)
    os.replace(orders_path + '.tmp', orders_path)
    with open(config_path + '.tmp', 'w') as f:
        f.write(market_text)
    os.replace(config_path + '.tmp', config_path)
    write_feeders(os.path.join(out_dir, 'feeders.csv'), feeders)
    return orders_path, config_path, len(orders), readings_path


FEEDER_SIZE = 20        # households per low-voltage feeder
FEEDERS_PER_ZONE = 5


def zones_table(feeders: dict[str, tuple[str, str]]) -> str:
    """The [zones] table of a market file for ``feeder_map``'s {participant: (feeder, zone)}.

    Args:
        feeders: every participant's feeder and zone.

    Returns:
        TOML text: a comment, ``[zones]`` and one ``zone = ["participant", ...]`` line per zone.
    """
    members: dict[str, list[str]] = {}
    for name, (_, zone) in sorted(feeders.items()):
        members.setdefault(zone, []).append(name)
    lines = ''.join(f'{zone} = [{", ".join(chr(34) + n + chr(34) for n in names)}]\n'
                    for zone, names in sorted(members.items()))
    return '\n# each participant\'s zone (its grid connection, public)\n[zones]\n' + lines


def feeder_map(participants, zones=0):
    """{participant: (feeder, zone)}: FEEDER_SIZE households per feeder; FEEDERS_PER_ZONE feeders per
    zone, or (zones > 0) the feeders split into that many zones of whole feeders."""
    feeders = max(1, -(-len(participants) // FEEDER_SIZE))
    def zone(f):
        return f * zones // feeders if zones else f // FEEDERS_PER_ZONE
    return {name: (f'F{i // FEEDER_SIZE:03d}', f'Z{zone(i // FEEDER_SIZE):02d}') for i, name in enumerate(participants)}


def write_feeders(path, feeders):
    """feeders.csv of a feeder_map."""
    with open(path + '.tmp', 'w') as f:
        f.write('participant,feeder,zone\n')
        f.writelines(f'{name},{feeder},{zone}\n' for name, (feeder, zone) in feeders.items())
    os.replace(path + '.tmp', path)
