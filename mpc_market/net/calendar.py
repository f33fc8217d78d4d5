"""The broker's round calendar (``[calendar]`` in BROKER.toml): rounds opened by the clock.

Round n delivers from ``start + n * period_s`` and trades slots ``n * slots .. n * slots +
slots - 1``; it opens ``open_before_s`` before its delivery and its gate closes
``gate_closure_before_s`` before it (a daily day-ahead market: period 86400, 96 slots, open 36 h
and close 12 h before midnight). Its id is derived from its delivery time, so a restarted broker
computes the same rounds, finds them in its store or at the nodes (opening is idempotent) and
never opens one twice; a round whose gate closed while the broker was down is not opened late.

With ``readings_deadline_after_s`` each round is also settled: meter readings are taken from
``readings_after_s`` (default 0) after the end of its delivery until the deadline, then the nodes
settle. ``rounds`` ends the calendar after that many rounds. ``mechanism`` may be a list: round n
uses entry n modulo its length (e.g. a double auction one day, sdr the next).

When the market file gives a ``start``, the rounds take their slots from the market's own time
mapping instead of ``n * slots`` (parsed once, when BROKER.toml is loaded): a daily calendar
(``period_s = 86400``) delivers the market's local calendar days (``MarketConfig.day_slots``: 92 or
100 quarter hours on a DST change in its ``timezone``, each round from local midnight and its
``day`` the local date), any other period the slots from its delivery to the next. ``slots`` must
then be the nominal count (``period_s`` / the slot length) and ``start`` a slot start (a daily
calendar's: a local midnight).

Every number is bounded when BROKER.toml is loaded, so no calendar can stall the broker's tick:
``period_s`` >= ``MIN_PERIOD_S``, every duration <= a year (``MAX_SECONDS``), at most
``MAX_OPEN_ROUNDS`` rounds open at once, and the prefix is a name whose longest round id still
is one (``common.names``). ``due`` never plans more than ``MAX_OPEN_ROUNDS`` either.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

from ..common.errors import BadParameter, InputError
from ..common.limits import MAX_SECONDS, ROUND_SLOTS
from ..common.names import NAME_RULE, is_name
from ..common.textinput import read_text, refuse_unknown_keys, toml_key_line
from ..market.config import MECHANISMS, MarketConfig, parse_config, with_mechanism

KEYS = ('market', 'mechanism', 'start', 'period_s', 'slots', 'open_before_s', 'gate_closure_before_s', 'prefix',
        'readings_after_s', 'readings_deadline_after_s', 'rounds')
# Round ids have one-second resolution, and each round is opened at every node and cleared under MPC
# (seconds for a small community): 10 s keeps ids unique and the nodes ahead of the clock.
# period_s = 0.01 planned 4.3 M rounds per tick (184 s).
MIN_PERIOD_S = 10
MAX_OPEN_ROUNDS = 100         # rounds open at once, so opened per broker tick at most
LONGEST_ID_SUFFIX = '-99991231T235959'


@dataclass(frozen=True)
class Calendar:
    market_path: str
    start_ms: int
    period_s: float
    slots: int
    open_before_s: float
    gate_closure_before_s: float
    mechanisms: tuple[str, ...] = ()  # round n uses mechanisms[n % len]; () = the market file's
    prefix: str = 'cal'
    readings_after_s: float = 0.0
    readings_deadline_after_s: float = 0.0  # 0: rounds are not settled
    rounds: int = 0                         # how many rounds in all; 0: no end
    market: MarketConfig | None = None      # the market's time mapping when its file gives a start

    def market_toml(self, mechanism: str = '') -> str:
        """The market text of new rounds (read when a round opens, so edits apply to later rounds)."""
        text = read_text(self.market_path, 'utf-8')
        return with_mechanism(self.market_path, text, mechanism) if mechanism else text


@dataclass(frozen=True)
class PlannedRound:
    round_id: str
    slots: list[int]
    opens_ms: int
    gate_closure_ms: int
    mechanism: str = ''
    day: str = ''                 # the delivery day (UTC)
    readings_open_ms: int = 0
    readings_deadline_ms: int = 0


DAILY_S = 86400


def _first_day(calendar: Calendar, market: MarketConfig) -> date:
    """The local date of a daily calendar's start in the market's timezone."""
    return datetime.fromtimestamp(calendar.start_ms / 1000, ZoneInfo(market.timezone)).date()


def _delivery(calendar: Calendar, n: int) -> tuple[int, int, list[int], str]:
    """(delivery ms, delivered ms, slots, day) of round n: by the market's time mapping when it has one."""
    market = calendar.market
    if market is None or market.start is None:
        delivery_ms = calendar.start_ms + round(n * calendar.period_s * 1000)
        day = datetime.fromtimestamp(delivery_ms / 1000, UTC).strftime('%Y-%m-%d')
        return (delivery_ms, calendar.start_ms + round((n + 1) * calendar.period_s * 1000),
                list(range(n * calendar.slots, (n + 1) * calendar.slots)), day)
    if calendar.period_s == DAILY_S:  # local calendar days: 23, 24 or 25 hours
        local_day = _first_day(calendar, market) + timedelta(days=n)
        slots = market.day_slots(local_day)
        day = local_day.isoformat()
    else:
        per = round(calendar.period_s) // (60 * market.slot_minutes)
        first = market.slot_of(datetime.fromtimestamp(calendar.start_ms / 1000, UTC))
        slots = range((first or 0) + n * per, (first or 0) + (n + 1) * per)
        day = ''
    at, end = (market.slot_start(s) for s in (slots.start, slots.stop))
    if at is None or end is None:
        raise BadParameter('start', 'a calendar over a market without start has no slot times')
    return (int(at.timestamp() * 1000), int(end.timestamp() * 1000), list(slots),
            day or at.strftime('%Y-%m-%d'))


def planned(calendar: Calendar, n: int) -> PlannedRound:
    """Round n of calendar (counted from its start, whether or not the calendar ends before)."""
    delivery_ms, delivered_ms, slots, day = _delivery(calendar, n)
    start = datetime.fromtimestamp(delivery_ms / 1000, UTC)
    settled = calendar.readings_deadline_after_s > 0
    return PlannedRound(f'{calendar.prefix}-{start.strftime("%Y%m%dT%H%M%S")}', slots,
                        delivery_ms - round(calendar.open_before_s * 1000),
                        delivery_ms - round(calendar.gate_closure_before_s * 1000),
                        calendar.mechanisms[n % len(calendar.mechanisms)] if calendar.mechanisms else '',
                        day,
                        delivered_ms + round(calendar.readings_after_s * 1000) if settled else 0,
                        delivered_ms + round(calendar.readings_deadline_after_s * 1000) if settled else 0)


def due(calendar: Calendar, now_ms: int) -> list[PlannedRound]:
    """The rounds that should be open now: opened, gate not yet closed.

    Args:
        calendar: the broker's calendar.
        now_ms: the time, in ms since the epoch.

    Returns:
        At most MAX_OPEN_ROUNDS rounds (the first ones), however the calendar was built.
    """
    period_ms = calendar.period_s * 1000
    first = max(0, int((now_ms - calendar.start_ms + calendar.gate_closure_before_s * 1000) // period_ms) - 1)
    last = int((now_ms - calendar.start_ms + calendar.open_before_s * 1000) // period_ms) + 1
    if calendar.rounds:
        last = min(last, calendar.rounds - 1)
    last = min(last, first + MAX_OPEN_ROUNDS + 1)  # one more on each side: the window's edges
    rounds = [planned(calendar, n) for n in range(first, max(first, last) + 1) if n <= last]
    return [r for r in rounds if r.opens_ms <= now_ms < r.gate_closure_ms][:MAX_OPEN_ROUNDS]


def load_calendar(path: str, text: str, table: dict[str, Any], relative_path: Callable[[str, str], str]) -> Calendar:
    """A Calendar from BROKER.toml's [calendar] table.

    Args:
        path: BROKER.toml's path.
        text: its text (for line numbers).
        table: its parsed [calendar] table.
        relative_path: resolves a path in the file against the file's directory.

    Returns:
        The calendar; its market file is parsed once, so its errors show now.

    Raises:
        InputError: an unknown, missing or invalid key (naming the file, line and key), or an
            error in the market file.
    """
    def fail(key: str, message: str) -> NoReturn:
        raise InputError(path, toml_key_line(text, key), key, message)
    refuse_unknown_keys(path, text, table, KEYS, 'calendar')
    for key in ('market', 'start', 'period_s', 'slots', 'open_before_s', 'gate_closure_before_s'):
        if key not in table:
            raise InputError(path, 1, key, 'missing in [calendar]')

    def seconds(key: str, zero_allowed: bool = False, least: float = 0) -> float:
        """table[key]: > 0 seconds (>= 0 if zero_allowed, >= least if given), at most a year."""
        value = table[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        low_ok = number and (value >= least if least or zero_allowed else value > 0)
        if not (low_ok and value <= MAX_SECONDS):  # TOML's nan fails both comparisons, inf the second
            low = f'>= {least}' if least else '>= 0' if zero_allowed else '> 0'
            fail(key, f'expected seconds {low} and <= {MAX_SECONDS} (a year), got {value!r}')
        return float(value)
    start = table['start']
    if isinstance(start, str):
        try:
            start = datetime.fromisoformat(start.replace('Z', '+00:00'))
        except ValueError:
            fail('start', f'expected a date and time like 2026-12-01T00:00:00Z, got {start[:40]!r}')
    if not isinstance(start, datetime) or start.tzinfo is None:
        fail('start', 'expected a date and time with its UTC offset, like 2026-12-01T00:00:00Z')
    slots = table['slots']
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= ROUND_SLOTS:
        fail('slots', f'expected an integer in 1..{ROUND_SLOTS}, got {slots!r}')
    mechanisms = table.get('mechanism', [])
    mechanisms = [mechanisms] if isinstance(mechanisms, str) else mechanisms
    if not isinstance(mechanisms, list) or not all(isinstance(m, str) and m in MECHANISMS for m in mechanisms):
        fail('mechanism', f'expected one of {", ".join(MECHANISMS)} or a list of them')
    count = table.get('rounds', 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        fail('rounds', f'expected a number of rounds >= 0 (0: no end), got {count!r}')
    prefix = table.get('prefix', 'cal')
    if not is_name(prefix) or not is_name(prefix + LONGEST_ID_SUFFIX):  # the nodes refuse any other round id
        fail('prefix', f'expected a prefix whose round ids ({str(prefix)[:20] + LONGEST_ID_SUFFIX!r}) are names '
                       f'({NAME_RULE}): at most {64 - len(LONGEST_ID_SUFFIX)} characters')
    calendar = Calendar(relative_path(path, str(table['market'])), int(start.timestamp() * 1000),
                        seconds('period_s', least=MIN_PERIOD_S), slots, seconds('open_before_s'),
                        seconds('gate_closure_before_s', True),
                        tuple(m for m in mechanisms if m), prefix,
                        seconds('readings_after_s', True) if 'readings_after_s' in table else 0.0,
                        seconds('readings_deadline_after_s') if 'readings_deadline_after_s' in table else 0.0, count)
    if calendar.gate_closure_before_s >= calendar.open_before_s:
        fail('gate_closure_before_s', 'must be less than open_before_s (a round opens before its gate closes)')
    if calendar.open_before_s - calendar.gate_closure_before_s > MAX_OPEN_ROUNDS * calendar.period_s:
        fail('open_before_s', f'more than {MAX_OPEN_ROUNDS} rounds would be open at once (open_before_s - '
                              f'gate_closure_before_s > {MAX_OPEN_ROUNDS} x period_s)')
    if 'readings_after_s' in table and calendar.readings_after_s >= calendar.readings_deadline_after_s:
        fail('readings_after_s', 'must be less than readings_deadline_after_s (the window opens before its deadline)')
    market = parse_config(calendar.market_path, calendar.market_toml())  # its own errors, with its lines
    if market.start is not None:
        _check_market_time(calendar, market, fail)
        calendar = replace(calendar, market=market)
    return calendar


def _check_market_time(calendar: Calendar, market: MarketConfig, fail: Callable[[str, str], NoReturn]) -> None:
    """A calendar over a market with a start: its period a whole number of slots, its slots that
    number (nominal: a DST day has 92 or 100), its start a slot start (a daily one's a local midnight)."""
    slot_s = 60 * market.slot_minutes
    if calendar.period_s % slot_s:
        fail('period_s', f'must be a whole number of the market\'s {market.slot_minutes}-minute slots')
    if calendar.slots != calendar.period_s // slot_s:
        fail('slots', f'the market file gives a start: a period of {calendar.period_s:g} s has '
                      f'{calendar.period_s // slot_s:g} slots of {market.slot_minutes} minutes, not {calendar.slots}')
    start = datetime.fromtimestamp(calendar.start_ms / 1000, UTC)
    if market.slot_of(start) is None:
        fail('start', f'must be a slot start of the market (slot 0 starts {market.slot_start_text(0)}, '
                      f'every {market.slot_minutes} minutes)')
    local = start.astimezone(ZoneInfo(market.timezone))
    if calendar.period_s == DAILY_S and local.time() != time():
        fail('start', f'a daily calendar delivers the market\'s calendar days: start at a local midnight in '
                      f'{market.timezone}, not {local:%H:%M}')
