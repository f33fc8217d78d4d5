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


def community(participants, slots, seed, with_readings=False, profile_day=None, location=None, profiles=None):
    """Orders as a list of dicts with the orders-CSV keys (and meter readings if asked).

    Readings are what the meters measured: the planned net plus a forecast error of ~15 %
    and ~30 Wh of noise, so some participants end up short and others long. profile_day (a
    datetime.date): load from the BDEW H0 profile and PV from clear-sky irradiance from that day
    on (market/profiles.py, the optional extra) instead of the built-in shapes, at location
    (latitude, longitude; default profiles.LATITUDE, LONGITUDE). profiles: a dict that receives
    the arrays the orders come from (names, slot_ids, hours, load_wh, ev_wh, pv_wh, planned_wh,
    has_ev), for ``flex_offers``; it draws nothing, so the orders stay those of the seed.
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
    if profiles is not None:
        profiles.update(names=[f'h{p:0{width}d}' for p in range(participants)], slot_ids=slot_ids, hours=hours,
                        load_wh=load * 250, ev_wh=ev * 250, pv_wh=pv * 250, planned_wh=net_wh, has_ev=has_ev)
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
                    location=None, flex=False):
    """Write orders.csv, readings.csv, feeders.csv and market.toml into out_dir; return their paths.

    zones > 0: a zoned market (communities of whole feeders): zones = true, the network fee and a
    [zones] table in market.toml, so a deployment can use it as is; orders.csv repeats the zone.
    profile_day, location: see ``community``; market.toml then time-stamps the slots
    (``profile_time_keys``). flex: also offers.csv and requests.csv (``flex_files``). A size above
    ``check_size``'s or a fee off the tick grid is refused before anything is written."""
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
    profiles: dict = {}
    orders, readings = community(participants, slots, seed, with_readings=True, profile_day=profile_day,
                                 location=location, profiles=profiles)
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
    if flex:
        from .output import write_all
        config = parse_config(config_path, market_text)
        write_all(out_dir, flex_files(profiles, {n: f for n, (f, _) in feeders.items()}, seed, config, profile_day))
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


# -- generated flexibility (generate --flex; docs/flexibility.md "Generated flexibility") -----------

FLEX_STREAM = 25            # the offers' own random stream: default_rng([seed, 25]) leaves the orders as they were
EV_KW = 7.4                 # an EV's charging power
EV_SHARE = 0.15             # households with an EV when the profiles do not say (a simbench grid)
HEAT_PUMP_SHARE, HEAT_PUMP_LOAD = 0.2, 0.5   # households with one; its part of their load in the heating season
HEATING_MONTHS = (1, 2, 3, 10, 11, 12)
BATTERY_SHARE_PV, BATTERY_SHARE = 0.5, 0.1   # households with a battery, among PV owners and the others
RANDOM_SHARE = 0.02         # household-slots with a random offer besides the devices
# price centres per kWh (N(0, PRICE_SD) around them, on the 0.001 grid)
PRICE_CENTRES = {'ev': 0.07, 'heat_pump': 0.06, 'battery': 0.05, 'pv': 0.055}
PRICE_SD = 0.008
MIN_OFFER_WH = 5            # as orders: less is no offer
EXAMPLE_CAP, EXAMPLE_SHARE = '0.100', 0.1    # the example requests: cap per kWh, share of the feeder's peak


def _window(hours: np.ndarray, *spans: tuple[float, float]) -> np.ndarray:
    """True in the slots whose middle lies in one of the [from, to) hour spans."""
    return np.asarray(np.any([(hours >= a) & (hours < b) for a, b in spans], axis=0))


def flex_offers(profiles: dict, seed: int, day=None, max_wh: int = MAX_ORDER_WH) -> list[dict[str, str | int]]:
    """The households' flexibility offers from the profiles their orders come from (offers-CSV keys).

    Per household and slot the devices offer (Wh of the slot): an EV (the profiles' EVs, else 15 %
    of households) in the evening (17:00-23:00) ``up`` its charging when it charges above half
    power, else ``down`` its spare power; a heat pump (20 %, only in the heating season: October to
    March, or any day without a date) ``up`` its part of the load (half) in the morning and evening
    peaks (6-9, 17-21 h) and ``down`` its spare power (2-3 kW) at night and midday (0-5, 11-15 h); a
    battery (half the PV owners, a tenth of the others; 3-5 kW) ``down`` (charge) 10-15 h and
    ``up`` (discharge) 17-22 h; PV ``down`` (curtail) its generation, at most the planned export.
    An ``up`` volume is at most the planned net import (an activation never turns a household into
    an exporter). The devices of one direction add up; a slot's offer takes the direction with the
    larger volume (one offer per household and slot), at most ``max_wh``, its price the devices'
    volume-weighted centre (EV 0.07, heat pump 0.06, battery 0.05, PV 0.055 per kWh) plus
    N(0, 0.008), on the 0.001 grid. Besides, 2 % of the other household-slots offer 50-1000 Wh
    (``up`` only from an importer) at a price uniform in 0.04..0.15. Offers under 5 Wh are dropped.

    Args:
        profiles: ``community``'s arrays (names, slot_ids, hours, load_wh, pv_wh, planned_wh; ev_wh and
            has_ev optional).
        seed: the community's seed (the offers draw from their own stream of it).
        day: the first day (a datetime.date) or None (no date: heating assumed).
        max_wh: the market's max_order_wh.

    Returns:
        The offers by participant then slot.
    """
    rng = np.random.default_rng([seed, FLEX_STREAM])
    names, hours = profiles['names'], np.asarray(profiles['hours'])
    load, pv = np.asarray(profiles['load_wh'], float), np.asarray(profiles['pv_wh'], float)
    planned = np.asarray(profiles['planned_wh'], float)
    n, slots = planned.shape
    importing = np.maximum(planned, 0)
    given = profiles.get('has_ev')
    has_ev = np.asarray(rng.random(n) < EV_SHARE if given is None else given)
    ev = profiles.get('ev_wh')
    evening = _window(hours, (17, 23))[None, :]
    rated = EV_KW * 250
    ev = np.where(has_ev[:, None] & evening, np.minimum(load, rated), 0.0) if ev is None else np.asarray(ev, float)
    charging = has_ev[:, None] & evening
    ev_up = np.where(charging & (ev > rated / 2), ev, 0.0)
    ev_down = np.where(charging & (ev <= rated / 2), rated - ev, 0.0)
    heating = day is None or day.month in HEATING_MONTHS
    has_hp = np.asarray((rng.random(n) < HEAT_PUMP_SHARE) & heating)
    hp_wh = HEAT_PUMP_LOAD * load
    hp_rated = np.asarray(rng.uniform(2.0, 3.0, n))[:, None] * 250
    hp_up = np.where(has_hp[:, None] & _window(hours, (6, 9), (17, 21))[None, :], hp_wh, 0.0)
    hp_down = np.where(has_hp[:, None] & _window(hours, (0, 5), (11, 15))[None, :],
                       np.maximum(hp_rated - hp_wh, 0), 0.0)
    has_pv = pv.max(axis=1) > 0
    has_bat = rng.random(n) < np.where(has_pv, BATTERY_SHARE_PV, BATTERY_SHARE)
    bat = has_bat[:, None] * np.asarray(rng.uniform(3.0, 5.0, n))[:, None] * 250
    bat_down = np.where(_window(hours, (10, 15))[None, :], bat, 0.0)
    bat_up = np.where(_window(hours, (17, 22))[None, :], bat, 0.0)
    pv_down = np.minimum(pv, np.maximum(-planned, 0))
    ups = {'ev': ev_up, 'heat_pump': hp_up, 'battery': bat_up}
    downs = {'ev': ev_down, 'heat_pump': hp_down, 'battery': bat_down, 'pv': pv_down}

    def total(parts: dict) -> tuple[np.ndarray, np.ndarray]:
        volume = sum(parts.values())
        price = sum(PRICE_CENTRES[k] * v for k, v in parts.items()) / np.where(volume > 0, volume, 1)
        return volume, price
    up, up_price = total(ups)
    up = np.minimum(up, importing)
    down, down_price = total(downs)
    is_up = up > down
    volume = np.minimum(np.where(is_up, up, down), max_wh)
    price = np.where(is_up, up_price, down_price) + rng.normal(0, PRICE_SD, (n, slots))
    extra = (volume < MIN_OFFER_WH) & (rng.random((n, slots)) < RANDOM_SHARE)
    extra_up = extra & (rng.random((n, slots)) < 0.5) & (importing >= MIN_OFFER_WH)
    extra_volume = rng.integers(50, 1001, (n, slots)).astype(float)
    volume = np.where(extra, np.where(extra_up, np.minimum(extra_volume, importing), extra_volume), volume)
    is_up = np.where(extra, extra_up, is_up)
    price = np.where(extra, rng.uniform(0.04, 0.15, (n, slots)), price)
    volume = np.floor(volume).astype(np.int64)
    offers: list[dict[str, str | int]] = []
    for p, j in zip(*np.nonzero(volume >= MIN_OFFER_WH), strict=True):
        offers.append({'participant': names[p], 'slot': int(profiles['slot_ids'][j]),
                       'direction': 'up' if is_up[p, j] else 'down', 'volume_wh': int(volume[p, j]),
                       'price': f'{round(float(price[p, j]), 3):.3f}'})
    return offers


def example_requests(offers_feeders: dict[str, str], profiles: dict) -> list[dict[str, str | int]]:
    """Example requests for the feeders (requests-CSV keys): per feeder a DSO ``up`` request in
    the slot of its largest planned net import and a ``down`` one in the slot of its largest net
    export, each a tenth of that position at a cap of 0.100 per kWh; and an aggregator ``up``
    request of a twentieth of the community's largest net import, in its slot.

    Args:
        offers_feeders: {participant: feeder}.
        profiles: ``community``'s arrays (names, slot_ids, planned_wh).

    Returns:
        The requests, DSO ones by feeder, the aggregator's last.
    """
    planned = np.asarray(profiles['planned_wh'], np.int64)
    slot_ids = profiles['slot_ids']
    rows: dict[str, np.ndarray] = {}
    for p, name in enumerate(profiles['names']):
        feeder = offers_feeders.get(name)
        if feeder is not None:
            rows[feeder] = rows.get(feeder, np.zeros(planned.shape[1], np.int64)) + planned[p]
    requests: list[dict[str, str | int]] = []
    for feeder, net in sorted(rows.items()):
        for direction, values in (('up', net), ('down', -net)):
            j = int(np.argmax(values))
            volume = int(values[j] * EXAMPLE_SHARE)
            if volume >= 1:
                slot = int(slot_ids[j])
                requests.append({'request': f'dso-{feeder}-{slot}-{direction}', 'buyer': 'dso', 'feeder': feeder,
                                 'slot': slot, 'direction': direction, 'volume_wh': volume,
                                 'price_cap': EXAMPLE_CAP})
    community_net = planned.sum(axis=0)
    j = int(np.argmax(community_net))
    if community_net[j] * EXAMPLE_SHARE / 2 >= 1:
        slot = int(slot_ids[j])
        requests.append({'request': f'aggregator-{slot}-up', 'buyer': 'aggregator', 'feeder': '', 'slot': slot,
                         'direction': 'up', 'volume_wh': int(community_net[j] * EXAMPLE_SHARE / 2),
                         'price_cap': EXAMPLE_CAP})
    return requests


def flex_files(profiles: dict, feeder_of: dict[str, str], seed: int, config, day=None) -> dict[str, str]:
    """offers.csv (with slot_start when the market has a start) and requests.csv of a community.

    Args:
        profiles: ``community``'s arrays.
        feeder_of: {participant: feeder}.
        seed: the community's seed.
        config: its MarketConfig (max_order_wh, slot times).
        day: the profiles' first day, or None.

    Returns:
        {file name: CSV text}.
    """
    from .flex import REQUEST_COLUMNS
    from .output import csv_text
    offers = flex_offers(profiles, seed, day, config.max_order_wh)
    columns = ['participant', 'slot', 'direction', 'volume_wh', 'price']
    if config.start is not None:
        columns.insert(2, 'slot_start')
        for offer in offers:
            offer['slot_start'] = config.slot_start_text(int(offer['slot']))
    return {'offers.csv': csv_text(columns, offers),
            'requests.csv': csv_text(list(REQUEST_COLUMNS), example_requests(feeder_of, profiles))}
