"""Meter readings to the statistics aggregator: the grid half of ``mpc-market meter submit``.

The same upload that goes to the market nodes (mpc_market.net.meter) is packed per meter-day
(imports, then exports, per slot of the day: the slots of the day's rounds in order) and
Paillier-encrypted under the grid operators' keys, signed with the participant's key. The
aggregator keeps the first meter-day and answers a repeat with ALREADY_EXISTS: a retry reports
it as already held, never as a failure and never as a second count.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..common.errors import InputError
from ..net.client import ClientError
from .client import AggregatorClient
from .packing import DST_RULE, Layout
from .paillier import PublicKey
from .submission import EncryptedDay, encrypt_day

if TYPE_CHECKING:  # annotations only: no import of the market side at run time
    from ..net.meter import MeterUpload
    from ..net.trusted import TrustedRound


@dataclass
class AggregatorOutcome:
    accepted: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)      # already held from an earlier upload
    failed: dict[str, str] = field(default_factory=dict)    # meter -> reason


def day_values(readings: Mapping[tuple[str, int], int], rounds: Iterable['TrustedRound'], layout: Layout,
               path: str) -> dict[str, list[int]]:
    """The meter-days of a day's readings, as the operator keys pack them.

    Args:
        readings: {(meter, slot): net_wh}.
        rounds: every round delivering on the day (their slots are the day's, in order).
        layout: the operator keys' layout.
        path: the readings file (for the error).

    Returns:
        {meter: [import per day slot] + [export per day slot]}.

    Raises:
        InputError: the rounds' slots are not the layout's number of slots.
    """
    day_slots = sorted({s for r in rounds for s in r.slots})
    if len(day_slots) != layout.slots:
        raise InputError(path, 1, 'slot', f'the day has {len(day_slots)} slots, the operator keys expect '
                         f'{layout.slots}: {DST_RULE}; send the day to the market nodes without --aggregator')
    index = {s: i for i, s in enumerate(day_slots)}
    values: dict[str, list[int]] = {}
    for (meter, slot), net in readings.items():
        if slot in index:
            v = values.setdefault(meter, [0] * layout.values)
            v[index[slot]], v[layout.slots + index[slot]] = max(net, 0), max(-net, 0)
    return values


def upload_days(upload: 'MeterUpload', aggregator: str, public_keys: Sequence[PublicKey],
                feeders: Mapping[str, tuple[str, str]], keys_dir: str, client: str, path: str) -> AggregatorOutcome:
    """Encrypt and send each meter-day of an upload to the aggregator.

    Args:
        upload: the day's readings and the participants' keys.
        aggregator: its "host:port".
        public_keys: the operator keys to encrypt under (at least one).
        feeders: {meter: (feeder, zone)}.
        keys_dir, client: the TLS client certificate to connect with.
        path: the readings file (for errors).

    Returns:
        Which meters were accepted, already held, or failed (and why); a refused connection fails
        every meter of the day.

    Raises:
        InputError: the day's slots do not match the keys' layout.
    """
    layout = public_keys[0].layout
    values = day_values(upload.readings, upload.day_rounds, layout, path)
    outcome = AggregatorOutcome()
    days: list[EncryptedDay] = []
    for meter in upload.participants:
        if meter not in feeders:
            outcome.failed[meter] = f'{meter} has no feeder in the feeder map'
            continue
        days.append(encrypt_day(meter, upload.day, feeders[meter][0], values.get(meter, [0] * layout.values),
                                public_keys, upload.keys[meter]))
    connection = AggregatorClient(aggregator, keys_dir, client)
    try:
        replies = connection.submit(days)
    except ClientError as exc:
        outcome.failed.update({d.meter: str(exc) for d in days})
        return outcome
    finally:
        connection.close()
    for day, error in replies:
        if error is None:
            outcome.accepted.append(day.meter)
        elif error.startswith('ALREADY_EXISTS'):
            outcome.held.append(day.meter)
        else:
            outcome.failed[day.meter] = error
    return outcome
