"""Strict readers shared by every input file: text, TOML tables and CSV records.

Each error names the file, the line and the field (``InputError``), so a command can print one line
and exit with status 2.
"""

import csv
import difflib
import re
import tomllib

from .errors import InputError
from .names import NAME_RE, NAME_RULE


def toml_key_line(text, key):
    """Line of `key = ...` in TOML text (1 when absent), for error messages."""
    quoted = re.escape(key)
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf'\s*({quoted}|"{quoted}"|\'{quoted}\')\s*=', line):
            return number
    return 1


def closest_hint(word: str, known) -> str:
    """'; did you mean X?' for the known word closest to a misspelt one ('' if none is close).

    Args:
        word: what the user wrote.
        known: the words accepted there.

    Returns:
        The hint, to append to an error message.
    """
    matches = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f'; did you mean {matches[0]}?' if matches else ''


def refuse_unknown_keys(path: str, text: str, table: dict, known, section: str) -> None:
    """Refuse a key of a TOML [section] that is not known (a typo is never silently ignored).

    Args:
        path: the file, for the error.
        text: its TOML text (for the key's line).
        table: the parsed [section].
        known: the keys accepted in it.
        section: its name, for the error.

    Raises:
        InputError: naming the file, the key's line, the key and the closest known key.
    """
    for key in table:
        if key not in known:
            raise InputError(path, toml_key_line(text, key), str(key)[:80],
                             f'unknown key in [{section}]{closest_hint(key, known)}')


def toml_table_line(text, table):
    """Line of the `[table]` header in TOML text (1 when absent), for error messages."""
    for number, line in enumerate(text.splitlines(), 1):
        if re.match(rf'\s*\[\s*{re.escape(table)}\s*\]', line):
            return number
    return 1



def read_text(path, encoding='utf-8-sig'):
    """A whole input file as text; unreadable or non-UTF-8 files are InputErrors."""
    try:
        with open(path, 'rb') as f:
            return f.read().decode(encoding)
    except OSError as exc:
        raise InputError(path, 0, 'file', exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise InputError(path, 1, 'file', 'not UTF-8 text') from None



def parse_toml(path, text, **options):
    """TOML text as a dict; a syntax error is an InputError at its line."""
    try:
        return tomllib.loads(text, **options)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r'line (\d+)', str(exc))
        raise InputError(path, int(m.group(1)) if m else 1, 'toml', str(exc).split(' (at')[0]) from None
    except (ValueError, RecursionError):  # an integer of thousands of digits, arrays nested too deeply
        raise InputError(path, 1, 'toml', 'nested too deeply or a number too long') from None



def parse_int(path, line, field, value):
    if isinstance(value, bool):
        raise InputError(path, line, field, f'{value!r} is not an integer')
    if isinstance(value, int):
        if value.bit_length() > 63:
            raise InputError(path, line, field, 'integer out of range')
        return value
    if isinstance(value, str) and re.fullmatch(r'\s*[+-]?[0-9]{1,18}\s*', value):
        return int(value)
    raise InputError(path, line, field, f'{str(value)[:40]!r} is not an integer (at most 18 digits)')



def _separator_hint(header, columns):
    """Why a column may be missing: another separator (a spreadsheet's ';' or a tab), or a near miss."""
    for separator, name in ((';', 'semicolons'), ('\t', 'tabs'), ('|', 'bars')):
        if len(header) == 1 and separator in header[0]:
            return (f' (the header {header[0][:60]!r} is separated by {name}: save the file as '
                    'comma-separated CSV)')
    missing = [c for c in columns if c not in header]
    unknown = [h for h in header if h not in columns]
    near = difflib.get_close_matches(missing[0], unknown, n=1, cutoff=0.6) if missing else []
    return f' (the header has {near[0][:40]!r}: a misspelling of {missing[0]}?)' if near else ''


LINE_BREAK = re.compile('\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]')  # str.splitlines' boundaries


def csv_header(path: str, text: str) -> list[str]:
    """The stripped column names of a CSV text's first line, read without splitting the whole text.

    Raises:
        InputError: the first line is not CSV (e.g. a field over the csv module's limit).
    """
    try:
        return [h.strip() for h in next(csv.reader([LINE_BREAK.split(text, maxsplit=1)[0]]), [])]
    except csv.Error as exc:
        raise InputError(path, 1, 'header', f'not CSV ({exc})') from None


def csv_records(path, text, columns):
    """(line, {column: stripped value}) of a CSV with a header containing columns; blank lines skipped."""
    reader = csv.reader(text.splitlines())
    line = 1
    try:
        try:
            header = next(reader)
        except StopIteration:
            raise InputError(path, 1, 'header', 'empty file') from None
        header = [h.strip() for h in header]
        for column in columns:
            if column not in header:
                raise InputError(path, 1, column, 'missing column' + _separator_hint(header, columns))
        for line, row in enumerate(reader, 2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise InputError(path, line, 'row', f'{len(row)} fields, header has {len(header)}')
            yield line, dict(zip(header, (c.strip() for c in row), strict=True))
    except csv.Error as exc:
        raise InputError(path, reader.line_num or line, 'row', f'not CSV ({exc})') from None


def parse_participant_slot(path, line, row):
    """The (participant, slot) key of an order or reading row, validated."""
    participant = row['participant']
    if not isinstance(participant, str) or not NAME_RE.fullmatch(participant):
        raise InputError(path, line, 'participant', f'{str(participant)[:80]!r} is not {NAME_RULE}')
    slot = parse_int(path, line, 'slot', row['slot'])
    if slot < 0:
        raise InputError(path, line, 'slot', f'must be >= 0, got {slot}')
    return participant, slot
