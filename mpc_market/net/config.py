"""Deployment configuration files: NODE.toml and BROKER.toml.

NODE.toml::

    [node]
    index = 0
    listen = "127.0.0.1:7101"         # gRPC (TLS)
    data_dir = "node0"                # SQLite store and clearing runs (relative to this file)
    keys = "keys"                     # ca/ca.pem, nodes/node0.*, registry.json
    connect_timeout_s = 60            # MPyC start-up: all peers connected
    clearing_timeout_s = 900          # watchdog for one clearing run
    rate_per_s = 5                    # per-participant submission limit (token bucket)
    burst = 20
    retailer = "retailer"             # the key and TLS certificate name that fetches the retailer's view
    metrics = "127.0.0.1:9301"        # optional: Prometheus GET /metrics (plain HTTP) on this address only

    [deployment]
    nodes = ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"]   # gRPC, node 0 first
    mpc = ["127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203"]     # MPyC parties (TLS)

BROKER.toml::

    [broker]
    listen = "127.0.0.1:7100"
    data_dir = "broker"
    keys = "keys"                     # ca/ca.pem, broker/broker.*, nodes/node*.sign.pub only
    operators = ["operator"]          # client certificate names allowed to open and close rounds
    poll_s = 0.5
    max_attempts = 5                  # clearing attempts per round (a failed run is retried)
    metrics = "127.0.0.1:9300"        # optional: Prometheus GET /metrics (plain HTTP) on this address only

    [deployment]
    nodes = [...]
"""

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common.errors import InputError
from ..common.names import NAME_RULE, is_name
from ..common.textinput import parse_toml, read_text, refuse_unknown_keys, toml_key_line
from .calendar import Calendar, load_calendar

ADDRESS_RE = re.compile(r'^[A-Za-z0-9_.\-\[\]:]+:[0-9]{1,5}$')
DAY_S = 86400



@dataclass
class NodeConfig:
    path: str
    index: int
    listen: str
    data_dir: str
    keys: str
    nodes: list[str]
    mpc: list[str]
    connect_timeout_s: float = 60.0
    clearing_timeout_s: float = 900.0
    rate_per_s: float = 5.0
    burst: int = 20
    retailer: str = 'retailer'  # registered key and TLS client name that may fetch the retailer's view
    metrics: str = ''   # "host:port" of GET /metrics; '' = none



@dataclass
class BrokerConfig:
    path: str
    listen: str
    data_dir: str
    keys: str
    nodes: list[str]
    operators: list[str] = field(default_factory=lambda: ['operator'])
    poll_s: float = 0.5
    max_attempts: int = 5
    http: str = ''      # "host:port" of the read-only operator page; '' = none
    metrics: str = ''   # "host:port" of GET /metrics; '' = none
    calendar: Calendar | None = None  # rounds opened by the clock; None = by operators only



def _tables(path: str, *sections: str) -> tuple[Any, ...]:
    """(text, table, ...) of a TOML file's [sections], parsed once."""
    text = read_text(path, 'utf-8')
    doc = parse_toml(path, text)
    tables = []
    for section in sections:
        table = doc.get(section)
        if not isinstance(table, dict):
            raise InputError(path, 1, section, f'missing [{section}] table')
        tables.append(table)
    return (text, *tables)



def load_table(path: str, section: str) -> tuple[Any, ...]:
    """A TOML file's text and its [section].

    Args:
        path: the file.
        section: the table's name.

    Returns:
        (text, table).

    Raises:
        InputError: the file cannot be read, is no TOML or has no such table.
    """
    return _tables(path, section)



def _load(path: str, section: str) -> tuple[Any, ...]:
    return _tables(path, section, 'deployment')



def get_value(path: str, text: str, table: Mapping[str, Any], key: str, kind: type | tuple[type, ...],
              default: Any = None, check: Callable[[Any], object] | None = None, what: str = '') -> Any:
    """table[key], checked.

    Args:
        path, text: the file and its text (for the error's line).
        table: its parsed table.
        key: the key.
        kind: the type (or types) the value must have (a bool never passes).
        default: the value when the key is absent; None: the key is required.
        check: a further test of the value.
        what: what is expected, for the error.

    Returns:
        The value, or default.

    Raises:
        InputError: missing without a default, of another type, or failing check.
    """
    if key not in table:
        if default is None:
            raise InputError(path, 1, key, 'missing')
        return default
    value = table[key]
    ok = isinstance(value, kind) and not isinstance(value, bool) and (check is None or check(value))
    if not ok:
        raise InputError(path, toml_key_line(text, key), key, f'expected {what}, got {value!r}')
    return value



def _number(path: str, text: str, table: Mapping[str, Any], key: str, default: float, lo: float, hi: float,
            integer: bool = False) -> Any:  # an int with integer, else a float
    """table[key] (or default) within lo..hi; TOML's nan and inf fail the comparison, so no setting can
    make a timer spin or never fire."""
    kind, what = (int, 'an integer') if integer else ((int, float), 'a number')
    value = get_value(path, text, table, key, kind, default, lambda v: lo <= v <= hi, f'{what} in {lo}..{hi}')
    return value if integer else float(value)



def _addresses(path: str, text: str, table: Mapping[str, Any], key: str, count: int | None = None) -> list[str]:
    value = get_value(path, text, table, key, list, what='a list of "host:port"')
    if not value or not all(isinstance(a, str) and ADDRESS_RE.match(a) for a in value):
        raise InputError(path, toml_key_line(text, key), key,
                         f'expected a non-empty list of "host:port", got {value!r}')
    if count is not None and len(value) != count:
        raise InputError(path, toml_key_line(text, key), key, f'{len(value)} addresses for {count} nodes')
    return value



def optional_address(path: str, text: str, table: Mapping[str, Any], key: str) -> str:
    """table[key]: "host:port", or '' when absent.

    Args:
        path, text, table, key: as for get_value.

    Returns:
        The address, or ''.

    Raises:
        InputError: not '' nor a "host:port".
    """
    return get_value(path, text, table, key, str, '', lambda v: v == '' or ADDRESS_RE.match(v), '"host:port"')



def relative_path(path: str, value: str) -> str:
    """A path from a config file, resolved against the file's directory unless absolute.

    Args:
        path: the config file.
        value: the path it names.

    Returns:
        The resolved path.
    """
    return value if os.path.isabs(value) else os.path.join(os.path.dirname(os.path.abspath(path)), value)



NODE_KEYS = ('index', 'listen', 'data_dir', 'keys', 'connect_timeout_s', 'clearing_timeout_s', 'rate_per_s', 'burst',
             'retailer', 'metrics')
BROKER_KEYS = ('listen', 'data_dir', 'keys', 'operators', 'poll_s', 'max_attempts', 'http', 'metrics')
DEPLOYMENT_KEYS = ('nodes', 'mpc')


def load_node_config(path: str) -> NodeConfig:
    """NODE.toml: its [node] and [deployment] tables.

    Args:
        path: the file.

    Returns:
        The NodeConfig (paths resolved against the file's directory).

    Raises:
        InputError: an unknown, missing or invalid key (with its line), or 3..7 nodes not given.
    """
    text, node, deployment = _load(path, 'node')
    refuse_unknown_keys(path, text, node, NODE_KEYS, 'node')
    refuse_unknown_keys(path, text, deployment, DEPLOYMENT_KEYS, 'deployment')
    nodes = _addresses(path, text, deployment, 'nodes')
    if not 3 <= len(nodes) <= 7:
        raise InputError(path, toml_key_line(text, 'nodes'), 'nodes', f'a deployment has 3..7 nodes, got {len(nodes)}')
    return NodeConfig(
        path=path,
        index=get_value(path, text, node, 'index', int, check=lambda v: 0 <= v < len(nodes),
                        what=f'0..{len(nodes) - 1}'),
        listen=get_value(path, text, node, 'listen', str, check=ADDRESS_RE.match, what='"host:port"'),
        data_dir=relative_path(path, get_value(path, text, node, 'data_dir', str, what='a directory')),
        keys=relative_path(path, get_value(path, text, node, 'keys', str, what='a directory')),
        nodes=nodes, mpc=_addresses(path, text, deployment, 'mpc', len(nodes)),
        connect_timeout_s=_number(path, text, node, 'connect_timeout_s', 60.0, 1, DAY_S),
        clearing_timeout_s=_number(path, text, node, 'clearing_timeout_s', 900.0, 1, 7 * DAY_S),
        rate_per_s=_number(path, text, node, 'rate_per_s', 5.0, 0.001, 10**6),
        burst=_number(path, text, node, 'burst', 20, 1, 10**6, integer=True),
        retailer=get_value(path, text, node, 'retailer', str, 'retailer', is_name, NAME_RULE),
        metrics=optional_address(path, text, node, 'metrics'))



def load_broker_config(path: str) -> BrokerConfig:
    """BROKER.toml at path: its [broker], [deployment] and optional [calendar] tables, as load_node_config.

    Returns:
        The BrokerConfig (paths resolved against the file's directory).

    Raises:
        InputError: as load_node_config, or an error of the calendar or its market file.
    """
    text, broker, deployment = _load(path, 'broker')
    refuse_unknown_keys(path, text, broker, BROKER_KEYS, 'broker')
    refuse_unknown_keys(path, text, deployment, DEPLOYMENT_KEYS, 'deployment')
    calendar_table = parse_toml(path, text).get('calendar')
    if calendar_table is not None and not isinstance(calendar_table, dict):
        raise InputError(path, 1, 'calendar', '[calendar] must be a table')
    nodes = _addresses(path, text, deployment, 'nodes')
    operators = get_value(path, text, broker, 'operators', list, ['operator'],
                     lambda v: all(isinstance(o, str) for o in v), 'a list of certificate names')
    return BrokerConfig(
        path=path,
        listen=get_value(path, text, broker, 'listen', str, check=ADDRESS_RE.match, what='"host:port"'),
        data_dir=relative_path(path, get_value(path, text, broker, 'data_dir', str, what='a directory')),
        keys=relative_path(path, get_value(path, text, broker, 'keys', str, what='a directory')),
        nodes=nodes, operators=operators,
        poll_s=_number(path, text, broker, 'poll_s', 0.5, 0.01, 60),
        max_attempts=_number(path, text, broker, 'max_attempts', 5, 1, 1000, integer=True),
        http=optional_address(path, text, broker, 'http'), metrics=optional_address(path, text, broker, 'metrics'),
        calendar=load_calendar(path, text, calendar_table, relative_path) if calendar_table is not None else None)
