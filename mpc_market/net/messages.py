"""Every signed message between participants, nodes and the broker, in one place.

Order envelopes (signed by a participant, checked by every node), receipts (signed by a node),
results requests and sealed result shares, and the public result set the nodes sign. Each format
has its own domain string, so a signature made for one can never be replayed as another.
"""

import dataclasses
import functools
import hashlib
import json
import os
import re
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common import signing
from ..common.days import parse_day
from ..common.errors import BadParameter, InputError, Malformed, NotAuthenticated, Replayed, Tampered, WrongPhase
from ..common.names import is_name
from ..common.signing import SHA256_HEX, canonical_bytes
from ..market.config import MarketConfig
from ..market.output import public_table
from ..market.results import ClearingResult, public_slot_rows
from ..mpc.jobs import PublicOutputs
from ..rpc import market_pb2
from .store import Round

DOMAIN = b'mpc-market/order-envelope/v2\n'
READINGS_DOMAIN = b'mpc-market/readings-envelope/v2\n'
ENVELOPE_DOMAINS = {'order': DOMAIN, 'readings': READINGS_DOMAIN}  # an order signature never signs readings



class EnvelopeError(Malformed):
    """A malformed envelope or package, or one that does not belong here."""



NONCE_HEX = re.compile(r'[0-9a-f]{32}')



MAX_SEQ = (1 << 63) - 1



MAX_NODES = 7



@dataclass(frozen=True)
class Envelope:
    """What a participant signs over its packages for one round (one per node): the node checks it."""

    round_id: str
    participant: str
    nonce: str                # 32 hex digits, fresh per submission
    package_hashes: tuple[str, ...]  # SHA-256 hex of each node's package, node 0 first
    seq: int = 0              # the participant's submission counter: the highest wins at every node
    kind: str = 'order'       # 'order' or 'readings': not a JSON field, it selects the signed domain
    params_sha256: str = ''   # RoundParams.sha256() of the round as all nodes signed it: a node refuses an
                              # envelope made for other parameters (a lying broker's market text, slots, ...)

    def fields(self) -> dict[str, object]:
        """The signed JSON fields (all but kind, which selects the domain)."""
        return {'nonce': self.nonce, 'package_hashes': list(self.package_hashes), 'participant': self.participant,
                'round_id': self.round_id, 'seq': self.seq, 'params_sha256': self.params_sha256}

    def canonical(self) -> bytes:
        """What the participant signs: the kind's domain and the canonical JSON."""
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> bytes:  # computed once: parsing, signing and checking an envelope all need it
        return canonical_bytes(ENVELOPE_DOMAINS[self.kind], self.fields())

    def to_json(self) -> str:
        """The exact bytes a node stores and forwards: the signed canonical JSON, without the domain."""
        return self.canonical()[len(ENVELOPE_DOMAINS[self.kind]):].decode()

    @classmethod
    def from_json(cls, text: str | bytes, kind: str = 'order') -> 'Envelope':
        """Parse an envelope; only its own canonical encoding is accepted (no extra, missing or
        repeated keys, no other types, no other spacing), so the stored bytes are the signed bytes.

        Raises:
            EnvelopeError: anything else.
        """
        raw = text.encode() if isinstance(text, str) else bytes(text)
        try:  # a repeated key would not survive the canonical re-encoding below
            fields = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise EnvelopeError(f'malformed envelope: {str(exc)[:80]}') from None
        if not isinstance(fields, dict) or set(fields) != ENVELOPE_KEYS:
            raise EnvelopeError(f'malformed envelope: keys must be {sorted(ENVELOPE_KEYS)}')
        hashes = fields['package_hashes']
        ok = (is_name(fields['round_id']) and is_name(fields['participant'])
              and isinstance(fields['nonce'], str) and NONCE_HEX.fullmatch(fields['nonce'])
              and type(fields['seq']) is int and 0 <= fields['seq'] <= MAX_SEQ
              and isinstance(fields['params_sha256'], str) and SHA256_HEX.fullmatch(fields['params_sha256'])
              and isinstance(hashes, list) and 1 <= len(hashes) <= MAX_NODES
              and all(isinstance(h, str) and SHA256_HEX.fullmatch(h) for h in hashes))
        if not ok:
            raise EnvelopeError('malformed envelope: a field has the wrong type or format')
        envelope = cls(fields['round_id'], fields['participant'], fields['nonce'], tuple(hashes), fields['seq'], kind,
                       fields['params_sha256'])
        if envelope.to_json().encode() != raw:
            raise EnvelopeError('malformed envelope: not in canonical form')
        return envelope



ENVELOPE_KEYS = frozenset(f.name for f in dataclasses.fields(Envelope)) - {'kind'}




def package_hash(package: bytes) -> str:
    """SHA-256 hex of a package, as an envelope carries it."""
    return hashlib.sha256(package).hexdigest()



def next_seq() -> int:
    """A participant's next sequence number: nanoseconds since the epoch, so a later submission
    from the same participant (from any of its machines with a sane clock) outranks an earlier one."""
    return time.time_ns()



def seal(private_key: ed25519.Ed25519PrivateKey, round_id: str, participant: str, packages: Sequence[bytes], *,
         params_sha256: str, seq: int | None = None, kind: str = 'order') -> tuple[Envelope, bytes]:
    """A signed envelope for one participant's packages, bound to the round's parameters.

    Args:
        private_key: the participant's key.
        round_id: the round.
        participant: the participant.
        packages: one per node, node 0 first.
        params_sha256: RoundParams.sha256() as every node signed them.
        seq: the submission counter (default next_seq()).
        kind: 'order' or 'readings'.

    Returns:
        (envelope, signature).
    """
    envelope = Envelope(round_id, participant, os.urandom(16).hex(), tuple(package_hash(p) for p in packages),
                        next_seq() if seq is None else seq, kind, params_sha256)
    return envelope, private_key.sign(envelope.canonical())



def authenticate(envelope: Envelope, signature: bytes, registry: Mapping[str, ed25519.Ed25519PublicKey]) -> None:
    """Check that a registered participant signed this envelope.

    Args:
        envelope: the envelope.
        signature: its signature.
        registry: {participant: its registered key}.

    Raises:
        NotAuthenticated: an unknown participant or a bad signature (the same answer: no registry enumeration).
    """
    public_key = registry.get(envelope.participant)
    try:
        (public_key or _UNKNOWN).verify(signature, envelope.canonical())
        if public_key is None:
            raise InvalidSignature
    except InvalidSignature:
        raise NotAuthenticated(
            f'not authenticated: no valid signature of a registered {envelope.participant}') from None



_UNKNOWN = ed25519.Ed25519PrivateKey.generate().public_key()



def check(envelope: Envelope, signature: bytes, registry: Mapping[str, ed25519.Ed25519PublicKey],
          params: 'RoundParams', node_index: int, package: bytes, seen_nonces: Container[tuple[str, str]],
          authenticated: bool = False) -> None:
    """Check that node node_index should accept this submission for the round of params.

    Args:
        envelope, signature, registry: as for authenticate.
        params: the round's parameters as the nodes signed them.
        node_index: this node.
        package: the package sent to this node.
        seen_nonces: (participant, nonce) pairs already used.
        authenticated: the signature was checked already.

    Raises:
        NotAuthenticated: see authenticate.
        WrongPhase: another round or other parameters than params.
        EnvelopeError: another number of nodes, or no package hash for this node.
        Replayed: a used nonce.
        Tampered: the package does not match its signed hash.
    """
    if not authenticated:
        authenticate(envelope, signature, registry)
    if envelope.round_id != params.round_id:
        raise WrongPhase(f'envelope is for round {envelope.round_id!r}, the open round is {params.round_id!r}')
    if envelope.params_sha256 != params.sha256():
        raise WrongPhase(f'envelope was made for other parameters of round {params.round_id} than the nodes '
                         'signed (the client was shown another market, slots or gate closure)')
    if len(envelope.package_hashes) != params.nodes:
        raise EnvelopeError(f'envelope shares among {len(envelope.package_hashes)} nodes; the round has {params.nodes}')
    if (envelope.participant, envelope.nonce) in seen_nonces:
        raise Replayed(f'replayed envelope (nonce {envelope.nonce} already used by {envelope.participant})')
    if not 0 <= node_index < len(envelope.package_hashes):
        raise EnvelopeError(f'envelope has no package hash for node {node_index}')
    if package_hash(package) != envelope.package_hashes[node_index]:
        raise Tampered('package does not match the signed hash (tampered in transit?)')



RECEIPT_DOMAIN = b'mpc-market/receipt/v1\n'



def receipt_bytes(round_id: str, participant: str, nonce: str, package_sha256: str, accepted_ms: int,
                  node_index: int) -> bytes:
    """What a node signs when it accepts one submission (package_sha256: hex)."""
    return signing.canonical_bytes(RECEIPT_DOMAIN, {
        'round_id': round_id, 'participant': participant, 'nonce': nonce, 'package_sha256': package_sha256,
        'accepted_ms': accepted_ms, 'node_index': node_index})



BATCH_RECEIPT_DOMAIN = b'mpc-market/batch-receipt/v1\n'



def batch_receipt_bytes(node_index: int, accepted_ms: int, items: Iterable[tuple[str, str, str, str]]) -> bytes:
    """What a node signs once for a batch: items = [(round_id, participant, nonce, package SHA-256 hex)]
    of every accepted submission, in the batch's order."""
    return canonical_bytes(BATCH_RECEIPT_DOMAIN, {'node_index': node_index, 'accepted_ms': accepted_ms,
                                                  'items': [list(item) for item in items]})



RESULTS_REQUEST_DOMAIN = b'mpc-market/results-request/v1\n'



RESULT_SHARES_DOMAIN = b'mpc-market/result-shares/v1\n'



RESULT_KINDS = ('', 'settlement', 'retailer', 'delivery')  # clearing, settlement, the retailer's view,
#                                                          delivered flexibility (of an energy round)



def results_request_bytes(round_id: str, participant: str, node_index: int, nonce: str, unix_ms: int,
                          kind: str = '') -> bytes:
    """What a participant signs to fetch its result shares of one kind from one node, once."""
    return canonical_bytes(RESULTS_REQUEST_DOMAIN, {'round_id': round_id, 'participant': participant,
                                                    'node_index': node_index, 'nonce': nonce, 'unix_ms': unix_ms,
                                                    'kind': kind})



def result_shares_bytes(round_id: str, participant: str, node_index: int, status: str, nonce: str,
                        sealed_sha256: str, kind: str = '') -> bytes:
    """What a node signs over its sealed reply (sealed_sha256: SHA-256 of ephemeral key + ciphertext)."""
    return canonical_bytes(RESULT_SHARES_DOMAIN, {'round_id': round_id, 'participant': participant,
                                                  'node_index': node_index, 'status': status, 'nonce': nonce,
                                                  'sealed_sha256': sealed_sha256, 'kind': kind})



def seal_context(round_id: str, participant: str, node_index: int, status: str, nonce: str,
                 kind: str = '') -> bytes:
    """Associated data of a sealed reply: it opens only in the context it was made for."""
    return canonical_bytes(RESULT_SHARES_DOMAIN, {'round_id': round_id, 'participant': participant,
                                                  'node_index': node_index, 'status': status, 'nonce': nonce,
                                                  'kind': kind})



ROUND_PARAMS_DOMAIN = b'mpc-market/round-parameters/v1\n'

MAX_ROUND_SLOTS = 10_000
MAX_DAY_MS = 1 << 53  # a unix time in ms that JSON (and every client) represents exactly
DAY_TEXT = re.compile(r'([0-9]{4}-[0-9]{2}-[0-9]{2})?', re.ASCII)


@dataclass(frozen=True)
class RoundParams:
    """The exact parameters of a round that every node signs when it opens the round.

    Clients verify all m signatures (keys from the deployment manifest), then encode, share and
    sign against these values only, binding sha256() into every envelope; the broker's other
    RoundState fields are display only.
    """
    round_id: str
    slots: tuple[int, ...]       # sorted
    market_sha256: str           # SHA-256 hex of the market TOML text
    mechanism: str               # the market's mechanism (also inside the text: stated for readers)
    gate_closure_ms: int
    readings_open_ms: int
    readings_deadline_ms: int
    day: str                     # YYYY-MM-DD or ''
    nodes: int                   # m: the number of nodes the round is shared among
    flex_sha256: str = ''        # a flexibility round: SHA-256 hex of its requests CSV (mechanism 'flex');
                                 # an energy round's signed JSON has no such key (unchanged bytes)
    energy_round: str = ''       # a flexibility round settled with an energy round: that round's id
                                 # (only then in the signed JSON)

    @classmethod
    def of(cls, round_id: str, slots: Iterable[int], market_toml: str, gate_closure_ms: int, readings_open_ms: int,
           readings_deadline_ms: int, day: str, nodes: int, flex_requests: str = '',
           energy_round: str = '') -> 'RoundParams':
        """The parameters of a round from its specification (parses the market text for its mechanism;
        a flexibility round's mechanism is 'flex' and its requests' hash is bound, and the energy
        round that settles it, if any).

        Raises:
            InputError: the market text does not parse.
        """
        from ..market.config import parse_config
        from .flexround import requests_sha256
        config = parse_config(f'round {round_id}', market_toml)
        return cls(round_id, tuple(sorted(int(s) for s in slots)), hashlib.sha256(market_toml.encode()).hexdigest(),
                   'flex' if flex_requests else config.mechanism, int(gate_closure_ms), int(readings_open_ms),
                   int(readings_deadline_ms), day, int(nodes), requests_sha256(flex_requests), energy_round)

    def fields(self) -> dict[str, object]:
        """The signed JSON fields (flex_sha256 only in a flexibility round's, energy_round only where set)."""
        fields: dict[str, object] = {
            'round_id': self.round_id, 'slots': list(self.slots), 'market_sha256': self.market_sha256,
            'mechanism': self.mechanism, 'gate_closure_ms': self.gate_closure_ms,
            'readings_open_ms': self.readings_open_ms, 'readings_deadline_ms': self.readings_deadline_ms,
            'day': self.day, 'nodes': self.nodes}
        if self.flex_sha256:
            fields['flex_sha256'] = self.flex_sha256
        if self.energy_round:
            fields['energy_round'] = self.energy_round
        return fields

    def canonical(self) -> bytes:
        """What every node signs."""
        return self._canonical

    @functools.cached_property
    def _canonical(self) -> bytes:
        return canonical_bytes(ROUND_PARAMS_DOMAIN, self.fields())

    def to_json(self) -> bytes:
        """The signed canonical JSON without the domain (RoundState.params)."""
        return self.canonical()[len(ROUND_PARAMS_DOMAIN):]

    def sha256(self) -> str:
        """The hash every envelope of the round carries."""
        return self._sha256

    @functools.cached_property
    def _sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    @classmethod
    def from_json(cls, raw: bytes) -> 'RoundParams':
        """Parse RoundState.params: only the canonical encoding with every field in range.

        Raises:
            EnvelopeError: anything else.
        """
        try:
            fields = json.loads(bytes(raw))
        except (ValueError, RecursionError, UnicodeDecodeError):
            raise EnvelopeError('round parameters are not JSON') from None

        def integer(value: object, low: int, high: int) -> bool:
            return type(value) is int and low <= value <= high
        flex = isinstance(fields, dict) and 'flex_sha256' in fields
        settled_with = flex and 'energy_round' in fields
        keys = ROUND_PARAMS_KEYS if settled_with else FLEX_PARAMS_KEYS if flex else ENERGY_PARAMS_KEYS
        ok = (isinstance(fields, dict) and set(fields) == keys
              and is_name(fields['round_id'])
              and isinstance(fields['slots'], list) and 1 <= len(fields['slots']) <= MAX_ROUND_SLOTS
              and all(integer(s, 0, MAX_SEQ) for s in fields['slots'])
              and fields['slots'] == sorted(set(fields['slots']))
              and isinstance(fields['market_sha256'], str) and SHA256_HEX.fullmatch(fields['market_sha256'])
              and isinstance(fields['mechanism'], str) and is_name(fields['mechanism'])
              and all(integer(fields[k], 0, MAX_DAY_MS) for k in
                      ('gate_closure_ms', 'readings_open_ms', 'readings_deadline_ms'))
              and isinstance(fields['day'], str) and DAY_TEXT.fullmatch(fields['day'])
              and integer(fields['nodes'], 1, MAX_NODES)
              and (not flex or (isinstance(fields['flex_sha256'], str) and SHA256_HEX.fullmatch(fields['flex_sha256'])
                                and fields['mechanism'] == 'flex'))
              and (not settled_with or is_name(fields['energy_round'])))
        if not ok:
            raise EnvelopeError('round parameters have a field of the wrong type or format')
        params = cls(fields['round_id'], tuple(fields['slots']), fields['market_sha256'], fields['mechanism'],
                     fields['gate_closure_ms'], fields['readings_open_ms'], fields['readings_deadline_ms'],
                     fields['day'], fields['nodes'], fields.get('flex_sha256', ''), fields.get('energy_round', ''))
        if params.to_json() != bytes(raw):
            raise EnvelopeError('round parameters are not in canonical form')
        return params


ROUND_PARAMS_KEYS = frozenset(f.name for f in dataclasses.fields(RoundParams))
FLEX_PARAMS_KEYS = ROUND_PARAMS_KEYS - {'energy_round'}
ENERGY_PARAMS_KEYS = FLEX_PARAMS_KEYS - {'flex_sha256'}


def spec_problem(spec: market_pb2.RoundSpec, nodes: int) -> str:
    """What is wrong with a round specification (a RoundSpec) before a node stores and signs it.

    The bounds are those of RoundParams.from_json, so a node never signs parameters that no
    client would parse: at most MAX_ROUND_SLOTS distinct slots, times a client can represent and
    a real calendar day or none.

    Args:
        spec: the broker's RoundSpec (round_id, slots, market_toml, times, day).
        nodes: m, the number of nodes of this deployment.

    Returns:
        '' when the specification is acceptable, else a one-line reason.
    """
    if not 1 <= len(spec.slots) <= MAX_ROUND_SLOTS:
        return f'a round has 1 to {MAX_ROUND_SLOTS} slots, not {len(spec.slots)}'
    if spec.day:
        try:
            parse_day(spec.day)
        except ValueError:
            return 'the day is not a YYYY-MM-DD date'
    if spec.energy_round and not spec.flex_requests:
        return 'only a flexibility round (with requests) names an energy round'
    if spec.energy_round and not is_name(spec.energy_round):
        return 'the energy round is not a valid round id'
    try:
        params = RoundParams.of(spec.round_id, spec.slots, spec.market_toml, spec.gate_closure_unix_ms,
                                spec.readings_open_unix_ms, spec.readings_deadline_unix_ms, spec.day, nodes,
                                spec.flex_requests, spec.energy_round)
        RoundParams.from_json(params.to_json())
    except InputError as exc:
        return f'market: {exc}'
    except EnvelopeError:
        return 'a slot, a time or the day is out of range'
    from ..market.config import parse_config
    config = parse_config(f'round {spec.round_id}', spec.market_toml)
    if spec.flex_requests:
        from .flexround import flex_spec_problem
        problem = flex_spec_problem(spec.round_id, spec.slots, spec.market_toml, spec.flex_requests,
                                    spec.readings_deadline_unix_ms)
        if problem:
            return problem
    if config.zoned and not config.zone_map:  # clients' zone columns are their own word: not a grid map
        return 'market: zones = true needs a [zones] table of every participant\'s zone in a deployment'
    if spec.day and config.start is not None:  # nodes, clients and meters map the day by the market text alike
        try:
            delivered = config.day_slots(parse_day(spec.day))
        except (BadParameter, OverflowError) as exc:
            return f'market: {exc}'
        if not set(spec.slots) <= set(delivered):
            return (f'slots outside {spec.day}: in the market\'s time ({config.timezone}) that day is slots '
                    f'{delivered.start}-{delivered.stop - 1}')
    return ''


def params_of_state(state: Round, nodes: int) -> RoundParams:
    """The parameters a node signs for one of its stored rounds.

    Args:
        state: the stored round.
        nodes: how many nodes it is shared among.

    Returns:
        Its RoundParams.

    Raises:
        InputError: its market text does not parse (it did when the round opened).
    """
    return RoundParams.of(state.round_id, state.slots, state.market_toml, state.gate_closure_ms,
                          state.readings_open_ms, state.readings_deadline_ms, state.day, nodes, state.flex_requests,
                          state.energy_round)


PUBLIC_DOMAIN = b'mpc-market/public-results/v1\n'



def public_body(round_id: str, config: MarketConfig, public: PublicOutputs) -> str:
    """Canonical JSON of what the round makes public: per-slot results and counts, no identities.

    Args:
        round_id: the round.
        config: its MarketConfig.
        public: the run's mpc.jobs.PublicOutputs.

    Returns:
        The body every node signs.
    """
    slots = public_table(config, ClearingResult(public_slot_rows(config, public.slots), []))
    excluded = len(public.excluded)
    body: dict[str, object] = {'round_id': round_id, 'mechanism': config.mechanism, 'slots': slots,
                               'participants': len(public.participants) - excluded, 'excluded': excluded,
                               'missing': len(public.missing)}
    if config.feeder_min_cohort:  # the per-zone planned net positions the DSO checks the grid with
        body['feeder_positions'] = list(public.feeders)
    return json.dumps(body, sort_keys=True, separators=(',', ':'))



def settlement_enum(state: str, readings_deadline_ms: int, settlement: str) -> int:
    """The RoundState.Settlement value of a round.

    Args:
        state: its clearing state ('open', 'cleared', ...).
        readings_deadline_ms: its readings deadline (0: it is not settled).
        settlement: its settlement phase ('', 'settling', 'settled', 'failed').

    Returns:
        NONE unless it cleared and is settled, else READINGS, SETTLING, SETTLED or SETTLE_FAILED.
    """
    if not readings_deadline_ms or state != 'cleared':
        return market_pb2.RoundState.NONE
    return {'': market_pb2.RoundState.READINGS, 'settling': market_pb2.RoundState.SETTLING,
            'settled': market_pb2.RoundState.SETTLED, 'failed': market_pb2.RoundState.SETTLE_FAILED}[settlement]



def phase_name(state: str, settlement: int) -> str:
    """A round's phase in one word.

    Args:
        state: its clearing state ('open', 'clearing', ...).
        settlement: its RoundState.Settlement value.

    Returns:
        The clearing state, or once it cleared and if it is settled, the settlement's phase
        ('readings', 'settling', 'settled', 'settle-failed').
    """
    if settlement != market_pb2.RoundState.NONE:
        return market_pb2.RoundState.Settlement.Name(settlement).lower().replace('_', '-')
    return state



def state_phase(state: market_pb2.RoundState) -> str:
    """phase_name of a RoundState message.

    Args:
        state: the message.

    Returns:
        Its phase in one word.
    """
    return phase_name(market_pb2.RoundState.State.Name(state.state).lower(), state.settlement)



SETTLEMENT_DOMAIN = b'mpc-market/public-settlement/v1\n'

MISSING_READING_RULE = ('a participant in the market without a valid reading package counts as importing what '
                        'it bought and exporting nothing')



def settlement_body(round_id: str, public: PublicOutputs, flex_round: str = '') -> str:
    """Canonical JSON of what a settlement makes public: counts and the missing-reading rule, no identity;
    with flex_round, that round's activations were delivered in this settlement (participants'
    'delivery' shares exist).

    Args:
        round_id: the round.
        public: the settlement run's mpc.jobs.PublicOutputs.
        flex_round: the cleared flexibility round it settled, or ''.

    Returns:
        The body every node signs.
    """
    missing, invalid = len(public.missing_readings), len(public.meter_excluded)
    body: dict[str, object] = {
        'round_id': round_id, 'settled': len(public.participants),
        'metered': len(public.participants) - missing - invalid - len(public.order_excluded),
        'missing_readings': missing, 'invalid_readings': invalid, 'missing_reading_rule': MISSING_READING_RULE}
    if flex_round:  # an energy round's body is unchanged without one
        body['flex_round'] = flex_round
    return json.dumps(body, sort_keys=True, separators=(',', ':'))



def public_result_set(round_id: str, body: str, signatures: Mapping[int, bytes]) -> market_pb2.PublicResultSet:
    """The PublicResultSet message of a signed body.

    Args:
        round_id: the round.
        body: the body the nodes signed (see public_body; a settlement body has no slots).
        signatures: {node index: its signature}.

    Returns:
        The message, its slot fields parsed from body.
    """
    parsed = json.loads(body)
    slots = [market_pb2.SlotResult(slot=int(s['slot']), price=s.get('price', ''), traded_wh=int(s.get('traded_wh', 0)),
                                   residual_wh=int(s.get('residual_wh') or 0), buy_price=s.get('buy_price', ''),
                                   sell_price=s.get('sell_price', ''), market=s.get('market', ''),
                                   fee_amount=s.get('fee_amount', '')) for s in parsed.get('slots', [])]
    return market_pb2.PublicResultSet(round_id=round_id, body=body, slots=slots, signatures=[
        market_pb2.NodeSignature(node_index=i, signature=s) for i, s in sorted(signatures.items())])



def verify_public(body: str | bytes, signatures: Mapping[int, bytes], verify_keys: Sequence[ed25519.Ed25519PublicKey],
                  domain: bytes = PUBLIC_DOMAIN) -> None:
    """Check that every node signed exactly this body under domain.

    Args:
        body: the signed body.
        signatures: {node index: its signature}.
        verify_keys: the keys of all m nodes (a client's: from its deployment manifest, never from the broker).
        domain: PUBLIC_DOMAIN, SETTLEMENT_DOMAIN or ROUND_PARAMS_DOMAIN.

    Raises:
        Tampered: no keys, a signature of a node the deployment lacks, or one missing or bad.
    """
    what = {PUBLIC_DOMAIN: 'public results', SETTLEMENT_DOMAIN: 'public settlement',
            ROUND_PARAMS_DOMAIN: 'round parameters'}[domain]
    if not verify_keys:
        raise Tampered(f'no node keys to check the {what} with')
    if set(signatures) - set(range(len(verify_keys))):
        raise Tampered(f'the {what} carry signatures of nodes the deployment does not have')
    if isinstance(body, bytes):
        body = body.decode('utf-8', 'replace')
    for i, key in enumerate(verify_keys):
        if i not in signatures:
            raise Tampered(f'node {i} has not signed the {what}')
        try:
            key.verify(signatures[i], domain + body.encode())
        except InvalidSignature:
            raise Tampered(f'bad signature of node {i} on the {what}') from None
