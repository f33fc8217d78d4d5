"""Command-line values, checked by argparse before a command runs.

Every number, slot list and day an option takes is parsed here: ASCII digits only (Python's
``int`` and ``float`` also take '٣', '1_000', 'nan' and 'inf'), and within bounds, so a bad value
is argparse's own error line for that option (exit 2) before any file is read, any key loaded or
any connection made, and no value can make a command allocate or wait without end.
"""

import argparse
import math
import re

from ..common.days import parse_day
from ..common.errors import BadParameter
from ..common.limits import MAX_SECONDS, ROUND_SLOTS, SLOT_ID_MAX

__all__ = ['bounded_int', 'bounded_float', 'bounded_seconds', 'slot_list', 'day_text', 'decimal_text', 'round_id',
           'participant_id', 'client_args', 'MAX_BATCH', 'MAX_WORKERS', 'SEED_MAX']

INT_RE = re.compile(r'[+-]?[0-9]{1,19}', re.ASCII)
FLOAT_RE = re.compile(r'[+-]?([0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15})([eE][+-]?[0-9]{1,3})?', re.ASCII)
SLOTS_RE = re.compile(r'[0-9]{1,19}(-[0-9]{1,19})?', re.ASCII)
DECIMAL_RE = re.compile(r'[0-9]{1,9}(\.[0-9]{1,9})?', re.ASCII)

MAX_BATCH = 256      # the nodes' and the aggregator's admission limit per request (net/admission.py max_items)
MAX_WORKERS = 64     # batches in flight; a node serves 6 per client certificate at a time anyway
SEED_MAX = SLOT_ID_MAX


def _shown(text):
    return repr(text[:40] + ('...' if len(text) > 40 else ''))


def _within(value, text, lo, hi, unit=''):
    if value < lo:
        raise argparse.ArgumentTypeError(f'{_shown(text)} is too small (at least {lo}{unit})')
    if value > hi:
        raise argparse.ArgumentTypeError(f'{_shown(text)} is too large (at most {hi}{unit})')
    return value


def bounded_int(lo: int, hi: int):
    """An argparse ``type``: a decimal integer in lo..hi.

    Args:
        lo: the smallest value accepted.
        hi: the largest value accepted.

    Returns:
        A function of the option's text that returns the integer, or raises
        ``argparse.ArgumentTypeError`` (argparse prints it as one error line and exits 2).
    """
    def integer(text):
        if not INT_RE.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f'{_shown(text)} is not an integer in {lo}..{hi}')
        return _within(int(text), text, lo, hi)
    return integer


def bounded_float(lo: float, hi: float, unit: str = ''):
    """An argparse ``type``: a finite decimal number in lo..hi.

    Args:
        lo: the smallest value accepted.
        hi: the largest value accepted.
        unit: shown after the bounds in errors (' s', ' ms').

    Returns:
        A function of the option's text that returns the float, or raises
        ``argparse.ArgumentTypeError`` for 'nan', 'inf', '1e300', '٣' and anything out of bounds.
    """
    def number(text):
        value = float(text) if FLOAT_RE.fullmatch(text.strip()) else math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f'{_shown(text)} is not a number in {lo}..{hi}{unit}')
        return _within(value, text, lo, hi, unit)
    return number


def bounded_seconds(lo: float, hi: float = MAX_SECONDS):
    """An argparse ``type``: a finite number of seconds in lo..hi (default at most a year).

    Args:
        lo: the shortest duration accepted.
        hi: the longest (default ``MAX_SECONDS``).

    Returns:
        The ``bounded_float`` parser for seconds.
    """
    return bounded_float(lo, hi, ' s')


def slot_list(text: str) -> list:
    """An argparse ``type``: the slots of a round, like ``0-95`` or ``0,1,2``.

    Args:
        text: comma-separated slot ids and inclusive ranges ``LO-HI``.

    Returns:
        The slot ids, sorted.

    Raises:
        argparse.ArgumentTypeError: not that form, an id above int64, a range backwards, a slot
            twice, none, or more than ``ROUND_SLOTS`` (counted before any range is expanded).
    """
    parts = text.split(',')
    if not all(SLOTS_RE.fullmatch(p.strip()) for p in parts):
        raise argparse.ArgumentTypeError(f'{_shown(text)} is not like 0-95 or 0,1,2 (slot ids >= 0)')
    ranges = [tuple(int(x) for x in p.split('-')) if '-' in p else (int(p), int(p)) for p in parts]
    for lo, hi in ranges:
        if hi > SLOT_ID_MAX:
            raise argparse.ArgumentTypeError(f'slot {hi} is too large (at most {SLOT_ID_MAX})')
        if hi < lo:
            raise argparse.ArgumentTypeError(f'{lo}-{hi} is an empty range')
    if sum(hi - lo + 1 for lo, hi in ranges) > ROUND_SLOTS:
        raise argparse.ArgumentTypeError(f'{_shown(text)}: a round trades at most {ROUND_SLOTS} slots')
    slots = [s for lo, hi in ranges for s in range(lo, hi + 1)]
    if len(set(slots)) != len(slots):
        raise argparse.ArgumentTypeError(f'{_shown(text)} names a slot twice')
    return sorted(slots)


def day_text(text: str) -> str:
    """An argparse ``type``: a delivery day, exactly YYYY-MM-DD (``common.days.parse_day``).

    Args:
        text: the option's value.

    Returns:
        text itself, which is then the day's one spelling.

    Raises:
        argparse.ArgumentTypeError: not ASCII YYYY-MM-DD, or not a real date (2026-13-45).
    """
    try:
        parse_day(text)
    except BadParameter as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def decimal_text(text: str) -> str:
    """An argparse ``type``: a plain non-negative decimal such as a price (``0.010``), as text.

    Args:
        text: the option's value.

    Returns:
        text itself (written into a market file as it is, so nothing but digits and one point).

    Raises:
        argparse.ArgumentTypeError: anything else ('nan', '1e3', '-1', a newline, 10 digits).
    """
    if not DECIMAL_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f'{_shown(text)} is not a decimal like 0.010 (at most 9 digits each side)')
    return text


def _name(text: str, what: str) -> str:
    from ..common.names import NAME_RULE, is_name
    if not is_name(text):
        raise argparse.ArgumentTypeError(f'{what} {_shown(text)} is not {NAME_RULE}')
    return text


def round_id(text: str) -> str:
    """An argparse ``type``: a round id (the names rule); '' stays '' (the latest open round).

    Args:
        text: the option's text.

    Returns:
        The round id.

    Raises:
        argparse.ArgumentTypeError: it is not a valid name.
    """
    return _name(text, 'round id') if text else text


def participant_id(text: str) -> str:
    """An argparse ``type``: a participant id (the names rule), before it reaches a key path or a file name.

    Args:
        text: the option's text.

    Returns:
        The id.

    Raises:
        argparse.ArgumentTypeError: it is not a valid name.
    """
    return _name(text, 'participant id')


def client_args(parser: argparse.ArgumentParser, client: str, round_option: str = 'optional') -> None:
    """The options of every command that talks to a broker.

    Args:
        parser: the command's parser.
        client: the default client certificate name in KEYS/clients.
        round_option: 'optional' (empty: the latest open round), 'required', or 'none'.
    """
    parser.add_argument('--broker', required=True, metavar='HOST:PORT', help='the broker\'s address')
    parser.add_argument('--keys', required=True, metavar='DIR', help='key directory (CA, client certificate, '
                        'deployment manifest, participant keys)')
    parser.add_argument('--client', default=client, help='client certificate name in KEYS/clients')
    if round_option == 'required':
        parser.add_argument('--round', required=True, type=round_id, help='the round id')
    elif round_option == 'optional':
        parser.add_argument('--round', default='', type=round_id,
                            help='round id (default: the latest open round)')
