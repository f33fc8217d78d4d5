"""The one parser of delivery days (YYYY-MM-DD), for the CLI, the broker and the statistics.

A day is exactly four, two and two ASCII digits and a real calendar date. ``re``'s ``\\d`` and
``date.fromisoformat`` are both too lenient on their own: ``\\d`` matches Arabic-Indic and other
digits, and ``fromisoformat`` takes ``20261201`` and week dates like ``2026-W01-1``, so one day
would have several spellings (rounds, bills and meter-days are looked up by its text).
"""

import datetime
import re

from .errors import BadParameter

__all__ = ['DAY_RE', 'DAY_RULE', 'parse_day', 'is_day']

DAY_RE = re.compile(r'[0-9]{4}-[0-9]{2}-[0-9]{2}', re.ASCII)
DAY_RULE = 'a calendar date YYYY-MM-DD (ASCII digits)'


def parse_day(text: object) -> datetime.date:
    """The date a day's text names.

    Args:
        text: the day as given (a command-line value, a round's day, a file's field).

    Returns:
        The ``datetime.date``; its ``isoformat()`` is ``text`` again.

    Raises:
        BadParameter: (a ValueError, parameter ``day``) text is not YYYY-MM-DD or not a date.
    """
    if not isinstance(text, str) or not DAY_RE.fullmatch(text):
        raise BadParameter('day', f'{str(text)[:40]!r} is not {DAY_RULE}')
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:  # 2026-13-45, 2026-02-30, 0000-01-01
        raise BadParameter('day', f'{text!r} is not {DAY_RULE}') from None


def is_day(text: object) -> bool:
    """Whether text is a day ``parse_day`` accepts.

    Args:
        text: any value.

    Returns:
        True for a string YYYY-MM-DD naming a real date, else False.
    """
    try:
        parse_day(text)
    except BadParameter:
        return False
    return True
