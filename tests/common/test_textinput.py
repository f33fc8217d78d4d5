"""Integers in input files are ASCII digits only: Unicode digits (Arabic-Indic, fullwidth) that
Python's ``\\d`` and ``int()`` accept are refused with the file, line and field."""

import pytest

from mpc_market.common.errors import InputError
from mpc_market.common.textinput import parse_int
from mpc_market.net.config import ADDRESS_RE


@pytest.mark.parametrize('text', ['١٢٣', '１２３', '12３', '٣'])
def test_non_ascii_digits_are_refused(text):
    assert int(text) >= 0  # what Python alone would accept
    with pytest.raises(InputError) as info:
        parse_int('orders.csv', 7, 'energy_wh', text)
    assert 'orders.csv' in str(info.value) and '7' in str(info.value) and 'energy_wh' in str(info.value)


@pytest.mark.parametrize('text,value', [(' 42 ', 42), ('-7', -7), ('+0', 0), (5, 5)])
def test_ascii_integers_parse(text, value):
    assert parse_int('orders.csv', 2, 'slot', text) == value


def test_addresses_take_ascii_ports_only():
    assert ADDRESS_RE.match('127.0.0.1:7301')
    assert not ADDRESS_RE.match('127.0.0.1:٧٣٠١')
