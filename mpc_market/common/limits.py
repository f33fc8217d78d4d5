"""Bounds shared by every place that takes a slot list or a duration from outside.

One round trades at most ``ROUND_SLOTS`` slots (a calendar round, ``round open --slots``, a
generated community); slot ids are int64 on the wire; no configured or command-line duration
is longer than ``MAX_SECONDS`` (a year), so every deadline stays a small int64 of milliseconds.
"""

__all__ = ['ROUND_SLOTS', 'SLOT_ID_MAX', 'MAX_SECONDS']

ROUND_SLOTS = 10_000            # 104 days of 15-minute slots
SLOT_ID_MAX = (1 << 63) - 1     # protobuf int64
MAX_SECONDS = 366 * 86400
