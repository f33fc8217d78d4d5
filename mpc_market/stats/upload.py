"""Meter readings to the statistics aggregator: the grid half of ``mpc-market meter submit``.

The same upload that goes to the market nodes (mpc_market.net.meter) is packed per meter-day
(imports, then exports, per slot of the day: the slots of the day's rounds in order) and
Paillier-encrypted under the grid operators' keys, signed with the participant's key. The
aggregator keeps the first meter-day and answers a repeat with ALREADY_EXISTS: a retry reports
it as already held, never as a failure and never as a second count.
"""

from dataclasses import dataclass, field

from ..common.errors import InputError
from ..net.client import ClientError
from .client import AggregatorClient
from .submission import encrypt_day


@dataclass
class AggregatorOutcome:
    accepted: list = field(default_factory=list)
    held: list = field(default_factory=list)      # already held from an earlier upload
    failed: dict = field(default_factory=dict)    # meter -> reason


def day_values(readings, rounds, layout, path):
    """{meter: [import per day slot] + [export per day slot]} of {(meter, slot): net_wh}."""
    day_slots = sorted({s for r in rounds for s in r.slots})
    if len(day_slots) != layout.slots:
        raise InputError(path, 1, 'slot',
                         f'the day has {len(day_slots)} slots, the operator keys expect {layout.slots}')
    index = {s: i for i, s in enumerate(day_slots)}
    values = {}
    for (meter, slot), net in readings.items():
        if slot in index:
            v = values.setdefault(meter, [0] * layout.values)
            v[index[slot]], v[layout.slots + index[slot]] = max(net, 0), max(-net, 0)
    return values


def upload_days(upload, aggregator, public_keys, feeders, keys_dir, client, path):
    """Encrypt and send each meter-day of a net.meter.MeterUpload; an AggregatorOutcome."""
    layout = public_keys[0].layout
    values = day_values(upload.readings, upload.day_rounds, layout, path)
    outcome, days = AggregatorOutcome(), []
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
