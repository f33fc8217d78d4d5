"""Meter readings to the market nodes: the settlement half of ``mpc-market meter submit``.

For each participant (meter) of a readings file and a delivery day, the client sends, per round
of that day in its readings window, the secret-shared reading package (one envelope signed with
the participant's key, domain ``readings-envelope``) to every node; the witnesses inside prove
the deviation from the participant's own orders (planned positions), so it needs them. The
other half, the Paillier-encrypted meter-day for the grid operators, is mpc_market.stats.upload.
A retry is idempotent: every node keeps the participant's latest envelope, with the same values.
"""

import dataclasses
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.errors import InputError, KeyFileError
from ..common.keys import load_participant_key
from ..common.manifest import Manifest
from ..market.book import Book, encode_readings
from ..market.orders import Order, load_orders
from ..market.readings import load_readings
from ..market.settlement import complete_readings
from ..rpc import market_pb2
from . import tls
from .client import BrokerClient, ClientError, client_manifest
from .messages import state_phase
from .submit import Submitter
from .trusted import TrustedRound, trusted_round


@dataclass
class MeterUpload:
    """A day of readings ready to send: the day's rounds taking readings, values and keys."""
    day: str
    rounds: list[TrustedRound]      # of the day, in their signed readings window
    day_rounds: list[TrustedRound]  # every round delivering on the day (the grid statistics' meter-day)
    readings: dict[tuple[str, int], int]  # {(participant, slot): net_wh}
    orders: list[Order]             # the participants' orders (planned positions)
    keys: dict[str, ed25519.Ed25519PrivateKey]

    @property
    def participants(self) -> list[str]:
        """The participants with readings (and keys), sorted."""
        return sorted(self.keys)

    @property
    def skipped(self) -> list[TrustedRound]:
        """Rounds of the day whose readings are not sent (window not open, or closed: late)."""
        return [r for r in self.day_rounds if r not in self.rounds]

    @property
    def why_no_round(self) -> str:
        """Why the market nodes get nothing ('' when a round of the day takes readings now)."""
        if self.rounds:
            return ''
        phases = ', '.join(f'{r.round_id} {state_phase(r.state)}' for r in self.day_rounds)
        return f'no round of {self.day} takes readings now ({phases})'


def day_rounds(broker: BrokerClient, day: str, manifest: Manifest) -> tuple[list[TrustedRound], list[TrustedRound]]:
    """The rounds of a delivery day, as their nodes signed them.

    Args:
        broker: a BrokerClient.
        day: the delivery day, YYYY-MM-DD.
        manifest: the client's deployment manifest.

    Returns:
        (TrustedRounds whose signed readings window is open now (possibly none), every round of the day).

    Raises:
        ClientError: no round delivers on day (nothing says which slots the day has).
        UntrustedRound: a round's state is not what its nodes signed.
    """
    rounds = [trusted_round(r, manifest, r.round_id) for r in broker.rounds() if r.day == day]
    if not rounds:
        raise ClientError(f'broker {broker.address}: no round delivers on {day}')
    # a day without a round taking readings still goes to the statistics aggregator: not an error here
    open_ = [r for r in rounds if r.state.settlement == market_pb2.RoundState.READINGS and r.takes_readings_now()]
    return open_, rounds


def reading_packages(state: TrustedRound, readings: dict[tuple[str, int], int], orders: Sequence[Order],
                     participants: Collection[str]) -> tuple[list[str], np.ndarray]:
    """The reading values of one round: each participant's readings in the round's slots, and the
    missing-reading rule where it has an order but no reading.

    Args:
        state: the round.
        readings: {(participant, slot): net_wh}.
        orders: the participants' orders.
        participants: whose packages to make.

    Returns:
        (participants in book order, values (n, slots, width)).
    """
    config = dataclasses.replace(state.config, zoned=False)
    slots = set(state.slots)
    book = Book(config, [o for o in orders if o.slot in slots and o.participant in participants],
                extra_pairs=[(p, s) for p in participants for s in state.slots])
    own = {pair: net for pair, net in readings.items() if pair[1] in slots and pair[0] in participants}
    net_of, _ = complete_readings(book, own)
    return book.participants, encode_readings(book, net_of, range(len(book.participants)), read=own)


def submit_to_nodes(upload: MeterUpload, keys_dir: str, client: str, workers: int = 4,
                    batch: int = 256) -> dict[str, str]:
    """Send the upload's reading packages to every node, round by round.

    Args:
        upload: the day's readings.
        keys_dir: the client's keys (TLS certificate).
        client: the TLS client certificate name.
        workers: participants submitted at once.
        batch: participants per SubmitBatch request.

    Returns:
        {participant: why not}; a participant counts if every round took it.
    """
    readings, orders, keys = upload.readings, upload.orders, upload.keys
    failed: dict[str, str] = {}
    for state in upload.rounds:
        slots = set(state.slots)
        participants = sorted({p for p, s in readings if s in slots})
        if not participants:
            continue
        names, values = reading_packages(state, readings, orders, set(participants))
        submitter = Submitter(state.endpoints(), tls.client_credentials(keys_dir, 'clients', client),
                              params_sha256={state.round_id: state.params.sha256()}, threshold=state.manifest.threshold)
        try:
            outcome = submitter.submit_many(state.round_id, [(p, keys[p], values[i]) for i, p in enumerate(names)],
                                            workers, batch, kind='readings')
        finally:
            submitter.close()
        for p, error in outcome.items():
            if error:
                failed.setdefault(p, f'round {state.round_id}: {error}')
    return failed


def load_upload(readings_path: str, orders_path: str | None, day: str, broker: BrokerClient, keys_dir: str,
                participants: Sequence[str] | None = None) -> MeterUpload:
    """The MeterUpload of a readings file for day (its rounds taking readings may be none).

    Args:
        readings_path: the readings CSV (participant,slot,net_wh).
        orders_path: the participants' orders (needed for the market nodes), or None.
        day: the delivery day, YYYY-MM-DD.
        broker: a BrokerClient.
        keys_dir: the key directory (manifest, participant keys).
        participants: only these participants (default: every one of the file).

    Returns:
        The MeterUpload.

    Raises:
        InputError: a malformed file, a slot not delivered on day, a participant without a key
            (naming the file, line and field).
        ClientError: no round delivers on day, or the broker refused.
    """
    rounds, every = day_rounds(broker, day, client_manifest(keys_dir))
    config = (rounds or every)[0].config
    lines = load_readings(readings_path, config)
    if participants:
        chosen = set(participants)
        lines = {pair: v for pair, v in lines.items() if pair[0] in chosen}
    day_slots = {s for r in every for s in r.slots}
    for (_, slot), (_, line) in lines.items():
        if slot not in day_slots:
            raise InputError(readings_path, line, 'slot', f'slot {slot} is not delivered on {day} (rounds '
                             f'{", ".join(r.round_id for r in every)})')
    keys: dict[str, ed25519.Ed25519PrivateKey] = {}
    for p in sorted({p for p, _ in lines}):
        try:
            keys[p] = load_participant_key(keys_dir, p)
        except KeyFileError as exc:
            line = min(line for (q, _), (_, line) in lines.items() if q == p)
            raise InputError(readings_path, line, 'participant', str(exc)) from None
    orders = load_orders(orders_path, config) if orders_path else []
    return MeterUpload(day, rounds, every, {pair: net for pair, (net, _) in lines.items()}, orders, keys)
