"""The daemons' log lines: ISO 8601 UTC times, one line per event, text or JSON lines.

``configure(level, fmt)`` sets up the root logger of a node, the broker or the aggregator:

- text: ``2026-12-01T08:15:02.123Z INFO mpc_market.node round r1: clearing done in 3.10 s ...``;
- json: ``{"time": "2026-12-01T08:15:02.123Z", "level": "INFO", "logger": "mpc_market.node",
  "message": "...", "round": "r1", "phase": "clearing"}``, one object per line.

An event about a round passes ``extra=event(round_id, phase)``: JSON lines carry them as fields,
text lines have them in the message already. A message or traceback never spans lines (newlines
are escaped), so a reason text from elsewhere cannot forge a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from .errors import BadParameter

__all__ = ['LEVELS', 'FORMATS', 'configure', 'event', 'utc_time']

LEVELS = ('debug', 'info', 'warning', 'error')
FORMATS = ('text', 'json')


def utc_time(unix_s: float) -> str:
    """ISO 8601 UTC with milliseconds: ``2026-12-01T08:15:02.123Z``."""
    return datetime.fromtimestamp(unix_s, UTC).strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3] + 'Z'


def event(round_id: str, phase: str = '') -> dict[str, str]:
    """The ``extra`` of a log call about a round (and the phase it is in)."""
    return {'round': round_id, 'phase': phase} if phase else {'round': round_id}


def _one_line(text: str) -> str:
    return text.replace('\\', '\\\\').replace('\r', '\\r').replace('\n', '\\n')


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER MESSAGE``, the traceback (if any) on the same line."""

    def format(self, record: logging.LogRecord) -> str:
        line = f'{utc_time(record.created)} {record.levelname} {record.name} {record.getMessage()}'
        if record.exc_info:
            line += ' | ' + self.formatException(record.exc_info)
        return _one_line(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per event: time, level, logger, message, and round, phase, error if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {'time': utc_time(record.created), 'level': record.levelname, 'logger': record.name,
                 'message': record.getMessage()}
        for key in ('round', 'phase'):
            value = getattr(record, key, None)
            if value:
                entry[key] = str(value)
        if record.exc_info:
            entry['error'] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class _Handler(logging.StreamHandler):
    """The handler configure() installs (and a later call replaces)."""


def configure(level: str = 'info', fmt: str = 'text', stream: TextIO | None = None) -> None:
    """Send every log record at level or above to stream (stderr) as text or JSON lines.

    Args:
        level: one of LEVELS.
        fmt: one of FORMATS.
        stream: where the lines go (default sys.stderr).

    Raises:
        BadParameter: an unknown level or format.
    """
    if level not in LEVELS or fmt not in FORMATS:
        raise BadParameter('level', f'log level {level!r} or format {fmt!r} is not one of {LEVELS} and {FORMATS}')
    handler = _Handler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == 'json' else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:  # a second call replaces the first's
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
