"""The broker's round calendar (``[calendar]`` in BROKER.toml): rounds opened by the clock.

Round n delivers from ``start + n * period_s`` and trades slots ``n * slots .. n * slots +
slots - 1``; it opens ``open_before_s`` before its delivery and its gate closes
``gate_closure_before_s`` before it (a daily day-ahead market: period 86400, 96 slots, open 36 h
and close 12 h before midnight). Its id is derived from its delivery time, so a restarted broker
computes the same rounds, finds them in its store or at the nodes (opening is idempotent) and
never opens one twice; a round whose gate closed while the broker was down is not opened late.
"""

from dataclasses import dataclass
from datetime import datetime, timezone

from ..common.errors import InputError
from ..common.textinput import read_text, toml_key_line
from ..market.config import MECHANISMS, parse_config, with_mechanism

KEYS = ('market', 'mechanism', 'start', 'period_s', 'slots', 'open_before_s', 'gate_closure_before_s', 'prefix')


@dataclass(frozen=True)
class Calendar:
    market_path: str
    start_ms: int
    period_s: float
    slots: int
    open_before_s: float
    gate_closure_before_s: float
    mechanism: str = ''
    prefix: str = 'cal'

    def market_toml(self):
        """The market text of new rounds (read when a round opens, so edits apply to later rounds)."""
        text = read_text(self.market_path, 'utf-8')
        return with_mechanism(self.market_path, text, self.mechanism) if self.mechanism else text


@dataclass(frozen=True)
class PlannedRound:
    round_id: str
    slots: list
    opens_ms: int
    gate_closure_ms: int


def planned(calendar, n):
    delivery_ms = calendar.start_ms + round(n * calendar.period_s * 1000)
    stamp = datetime.fromtimestamp(delivery_ms / 1000, timezone.utc).strftime('%Y%m%dT%H%M%S')
    return PlannedRound(f'{calendar.prefix}-{stamp}', list(range(n * calendar.slots, (n + 1) * calendar.slots)),
                        delivery_ms - round(calendar.open_before_s * 1000),
                        delivery_ms - round(calendar.gate_closure_before_s * 1000))


def due(calendar, now_ms):
    """The rounds that should be open now: opened, gate not yet closed."""
    period_ms = calendar.period_s * 1000
    first = max(0, int((now_ms - calendar.start_ms + calendar.gate_closure_before_s * 1000) // period_ms) - 1)
    last = int((now_ms - calendar.start_ms + calendar.open_before_s * 1000) // period_ms) + 1
    rounds = [planned(calendar, n) for n in range(first, max(first, last) + 1)]
    return [r for r in rounds if r.opens_ms <= now_ms < r.gate_closure_ms]


def load_calendar(path, text, table, relative_path):
    """A Calendar from BROKER.toml's [calendar] table; every error names the file, line and key."""
    def fail(key, message):
        raise InputError(path, toml_key_line(text, key), key, message)
    for key in table:
        if key not in KEYS:
            fail(key, 'unknown key in [calendar]')
    for key in ('market', 'start', 'period_s', 'slots', 'open_before_s', 'gate_closure_before_s'):
        if key not in table:
            raise InputError(path, 1, key, 'missing in [calendar]')

    def seconds(key, zero_allowed=False):
        value = table[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                value >= 0 if zero_allowed else value > 0):
            fail(key, f'expected seconds {">=" if zero_allowed else ">"} 0, got {value!r}')
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
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= 10000:
        fail('slots', f'expected an integer in 1..10000, got {slots!r}')
    mechanism = table.get('mechanism', '')
    if mechanism and mechanism not in MECHANISMS:
        fail('mechanism', f'{mechanism!r} is not one of {", ".join(MECHANISMS)}')
    prefix = table.get('prefix', 'cal')
    if not isinstance(prefix, str) or not prefix.isalnum() or len(prefix) > 20:
        fail('prefix', 'expected 1-20 letters or digits')
    calendar = Calendar(relative_path(path, str(table['market'])), int(start.timestamp() * 1000),
                        seconds('period_s'), slots, seconds('open_before_s'), seconds('gate_closure_before_s', True),
                        mechanism, prefix)
    if calendar.gate_closure_before_s >= calendar.open_before_s:
        fail('gate_closure_before_s', 'must be less than open_before_s (a round opens before its gate closes)')
    parse_config(calendar.market_path, calendar.market_toml())  # the market file's own errors, with its lines
    return calendar
