"""What a client believes about a round: only what its manifest pins and every node signed.

The broker's RoundState is a courier's note. A client (submit, meter submit, results, bills)
turns it into a TrustedRound before it encodes, shares or reconstructs anything: the round's
parameters must carry valid signatures of all m nodes of the client's deployment manifest, the
market text must hash to the signed hash, and the node addresses must be the manifest's. A
broker that drops nodes, lists none, edits the market text, the mechanism, the slots, the gate
closure or the readings window, or replays another round's state is refused with one line, and
nothing has been sent.
"""

import hashlib
from dataclasses import dataclass

from ..common.errors import InputError, KeyFileError, MarketError, Tampered
from ..common.manifest import Manifest
from ..market.config import MarketConfig, parse_config
from ..rpc import market_pb2
from .flexround import requests_sha256, round_kind
from .messages import ROUND_PARAMS_DOMAIN, EnvelopeError, RoundParams, verify_public
from .store import now_ms
from .submit import NodeEndpoint

__all__ = ['UntrustedRound', 'TrustedRound', 'trusted_round']


class UntrustedRound(MarketError):
    """The broker's round state does not match what the nodes signed or the manifest pins."""


@dataclass(frozen=True)
class TrustedRound:
    """A round as its nodes signed it, with the manifest's nodes to reach."""
    params: RoundParams
    config: MarketConfig
    market_toml: str
    addresses: tuple[str, ...]   # node 0 first, each pinned by the manifest
    manifest: Manifest
    state: market_pb2.RoundState  # the broker's phase fields (display and progress only)
    flex_requests: str = ''       # a flexibility round's requests CSV, hashed as the nodes signed it

    @property
    def kind(self) -> str:
        """'flex' for a flexibility round, else 'energy'."""
        return round_kind(self.flex_requests)

    @property
    def round_id(self) -> str:
        return self.params.round_id

    @property
    def slots(self) -> list[int]:
        return list(self.params.slots)

    def endpoints(self) -> list[NodeEndpoint]:
        """Every node of the deployment, with the signing key its receipts must carry."""
        return [NodeEndpoint(i, address, key)
                for i, (address, key) in enumerate(zip(self.addresses, self.manifest.verify_keys(), strict=True))]

    def open_for_orders(self) -> None:
        """Raise UntrustedRound unless the signed gate closure is still ahead (a replayed old state is not)."""
        if self.params.gate_closure_ms <= now_ms():
            raise UntrustedRound(f'round {self.round_id}: its gate closure (signed by the nodes) has passed')

    def takes_readings_now(self) -> bool:
        """Whether the signed readings window is open now."""
        return bool(self.params.readings_deadline_ms) and \
            self.params.readings_open_ms <= now_ms() <= self.params.readings_deadline_ms


def trusted_round(state: market_pb2.RoundState, manifest: Manifest, round_id: str = '') -> TrustedRound:
    """Check a broker's round state against the nodes' signatures and the manifest.

    Args:
        state: the RoundState the broker sent.
        manifest: the client's deployment manifest (held locally).
        round_id: the round the client asked for ('' for the broker's latest).
    Returns:
        The TrustedRound.
    Raises:
        UntrustedRound: unsigned or badly signed parameters, another round than asked for, a market text,
            slots, day or readings window other than signed, another count of nodes or unpinned addresses.
    """
    where = f'round {state.round_id[:80]!r} from the broker'
    if round_id and state.round_id != round_id:
        raise UntrustedRound(f'the broker answered with round {state.round_id[:80]!r} for round {round_id!r}')
    if not state.params:
        raise UntrustedRound(f'{where}: no round parameters signed by the nodes')
    try:
        params = RoundParams.from_json(state.params)
    except EnvelopeError as exc:
        raise UntrustedRound(f'{where}: {exc}') from None
    signatures = {s.node_index: s.signature for s in state.params_signatures}
    try:
        verify_public(state.params, signatures, manifest.verify_keys(), ROUND_PARAMS_DOMAIN)
    except Tampered as exc:
        raise UntrustedRound(f'{where}: {exc} (all {manifest.m} nodes of the deployment manifest must sign)') from None
    if params.nodes != manifest.m:
        raise UntrustedRound(f'{where}: shared among {params.nodes} nodes; the deployment manifest has {manifest.m}')
    if params.round_id != state.round_id:
        raise UntrustedRound(f'{where}: the nodes signed the parameters of round {params.round_id!r}')
    if hashlib.sha256(state.market_toml.encode()).hexdigest() != params.market_sha256:
        raise UntrustedRound(f'{where}: the market text is not the one the nodes signed')
    if requests_sha256(state.flex_requests) != params.flex_sha256:  # a lying broker's requests, or none
        raise UntrustedRound(f'{where}: the flexibility requests are not the ones the nodes signed')
    if state.energy_round != params.energy_round:
        raise UntrustedRound(f'{where}: the energy round settling it is not the one the nodes signed')
    # the gate closure and readings deadline shown may be earlier than signed (an operator closed the
    # round or its readings early); clients decide by the signed ones and the nodes enforce those
    differences = [name for name, shown, signed in (
        ('slots', sorted(state.slots), list(params.slots)), ('day', state.day, params.day)) if shown != signed]
    if differences:
        raise UntrustedRound(f'{where}: {", ".join(differences)} not as the nodes signed')
    try:
        addresses = manifest.node_addresses(list(state.node_addresses), where)
        config = parse_config(f'round {params.round_id}', state.market_toml)
    except (KeyFileError, InputError) as exc:
        raise UntrustedRound(str(exc)) from None
    if ('flex' if params.flex_sha256 else config.mechanism) != params.mechanism:
        raise UntrustedRound(f'{where}: mechanism {config.mechanism} is not the signed {params.mechanism}')
    return TrustedRound(params, config, state.market_toml, tuple(addresses), manifest, state, state.flex_requests)
