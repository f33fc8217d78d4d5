"""Command-line values shared by several commands, parsed into one-line errors."""

from ..common.errors import InputError


def day_option(value, option='day'):
    """A YYYY-MM-DD command-line value, or a one-line InputError naming the option."""
    from ..stats.submission import parse_day
    try:
        return parse_day(value)
    except ValueError:
        raise InputError('<command line>', 0, option, f'{value!r} is not YYYY-MM-DD') from None
