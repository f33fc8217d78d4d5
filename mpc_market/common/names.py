"""The one pattern every externally supplied name must match before it is used anywhere.

Participants, round ids, feeders, zones, operator key names and certificate names reach file
names, SQL parameters, log lines and signed messages. A name is 1-64 characters of
[A-Za-z0-9_.-] starting with a letter or digit, so it is never '', '.', '..', an option
('-x'), a path or a control sequence. Code still never joins a name from the network into a
path (run directories are named by a hash).
"""

import hashlib
import re
from typing import TypeGuard

from .errors import BadParameter, Malformed

__all__ = ['NAME_RE', 'NAME_RULE', 'is_name', 'check_name', 'check_round_id', 'path_token']

NAME_RE = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]{0,63}')
NAME_RULE = '1-64 of [A-Za-z0-9_.-], starting with a letter or digit'


def is_name(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and NAME_RE.fullmatch(value) is not None


def check_name(kind: str, value: object) -> str:
    """value if it is a valid name, else BadParameter (a ValueError) naming kind and the rule."""
    if not is_name(value):
        raise BadParameter('name', f'{kind} {str(value)[:80]!r} is not a valid name ({NAME_RULE})')
    return value


def check_round_id(value: object) -> str:
    """The one check of a round id from outside (a request, a calendar, an operator): the names rule.

    Args:
        value: the claimed round id.

    Returns:
        value, a valid name.

    Raises:
        Malformed: value is not a name (a refusal: the gRPC servicers answer INVALID_ARGUMENT).
    """
    if not is_name(value):
        raise Malformed(f'round id {str(value)[:80]!r} is not {NAME_RULE}')
    return value


def path_token(name: str) -> str:
    """A file-name-safe token for a name (its hash), for directories keyed by untrusted names."""
    return hashlib.sha256(name.encode()).hexdigest()[:24]
