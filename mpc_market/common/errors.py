"""Typed domain errors: every error the package raises on purpose derives from ``MarketError``.

Domain code says *what* went wrong with a class (``Replayed``, ``NotAuthenticated``, ...); only the
gRPC servicers (``mpc_market.net.server.status_of``) turn a class into a status code, and only the
CLI turns an error into one line and exit status 2. No caller ever inspects a message's text.
"""

__all__ = ['COMMAND_LINE', 'MarketError', 'InputError', 'KeyFileError', 'BadParameter', 'EngineError', 'Refused',
           'Malformed', 'NotAuthenticated', 'NotPermitted', 'NotFound', 'Replayed', 'Tampered', 'WrongPhase',
           'Overloaded', 'TooLarge', 'OutOfRange', 'Conflict', 'Unreachable']


class MarketError(Exception):
    """Base class of every error raised on purpose by mpc_market."""


COMMAND_LINE = '<command line>'   # InputError's path for a bad option: its field names the option


def _input_error_text(path: str, line: int | str, field: str, message: str) -> str:
    if path == COMMAND_LINE:
        return f'--{field}: {message}'
    if line in (0, '0', ''):  # a whole file (missing, unreadable, a key directory): no line to name
        return f'{path}: {message}' if field == 'file' else f'{path}: {field}: {message}'
    return f'{path}:{line}: {field}: {message}'


class InputError(MarketError):
    """A malformed input: the CLI prints ``FILE:LINE: field: message`` (``FILE: message`` for a whole
    file, ``--option: message`` for a bad option, path COMMAND_LINE) and exits with status 2."""

    def __init__(self, path: str, line: int | str, field: str, message: str):
        super().__init__(_input_error_text(path, line, field, message))
        self.path = path
        self.line = line
        self.field = field
        self.message = message


class KeyFileError(MarketError):
    """A missing, unreadable, mis-permissioned or malformed key or certificate file."""


class BadParameter(MarketError, ValueError):
    """A parameter outside what is safe or usable; ``parameter`` names it (e.g. ``bits``)."""

    def __init__(self, parameter: str, message: str):
        super().__init__(message)
        self.parameter = parameter


class EngineError(MarketError):
    """A secure computation failed (a node crashed, timed out or returned inconsistent shares)."""


class Refused(MarketError):
    """A request refused by a rule of the market or the protocol; subclasses name the reason."""


class Malformed(Refused):
    """The request itself is invalid (bad name, bad envelope, wrong node, wrong size)."""


class NotAuthenticated(Refused):
    """No valid signature of a registered participant (unknown and forged look the same)."""


class NotPermitted(Refused):
    """An authenticated caller asked for something its role may not have."""


class NotFound(Refused):
    """An unknown round, meter, key or result."""


class Replayed(Refused):
    """A nonce, envelope or submission seen before, or superseded by a later one."""


class Tampered(Refused):
    """Data that do not match what their owner signed."""


class WrongPhase(Refused):
    """Valid, but not now: a round not open, a day not yet released, gate closure passed."""


class Overloaded(Refused):
    """A rate limit or admission limit; the caller may retry later."""


class TooLarge(Refused):
    """A package or batch above the size limit."""


class OutOfRange(Refused):
    """A value outside its field (a ciphertext not below the key's modulus)."""


class Conflict(Refused):
    """An id that exists already with other content (a round opened before with other parameters)."""


class Unreachable(MarketError):
    """A party the request needs (a market node) could not be reached; the caller may retry."""
