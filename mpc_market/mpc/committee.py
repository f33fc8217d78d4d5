"""Scenario S1 at any size: the peers draw the round's committee of market nodes by lottery.

The round's peers are the participants of a registry every peer holds (``keys participants``),
each with its Ed25519 key. One attempt of the lottery:

1. commit: every peer picks a secret 32-byte nonce and publishes its commitment
   SHA-256(round, attempt, peer, nonce), signed with its key;
2. fix the list: every peer signs the digest of the whole commitment list (round, committee size
   asked for, attempt, the previous attempt's outcome, every peer's commitment) and reveals only
   once it holds every peer's signature of that same digest, so no commitment can change, be
   added or be dropped once a nonce is known;
3. reveal: every peer publishes its nonce, checked against its signed commitment.

The seed hashes the list digest and every nonce; peers are ranked by SHA-256(seed, peer) and the
first ``committee_size(peers, requested)`` run the market nodes. A peer that signed the list but
does not reveal is *withheld*: it is excluded from the round's lottery and the remaining peers
run a fresh attempt, with fresh nonces, whose signed list names the withheld peers (so every
remaining peer attests that it did not receive their reveals). A coalition of c peers that reveal
last, after seeing every other nonce, can therefore force at most c re-draws, each independent
of the last: c + 1 draws in all, counted by ``capture_probability(..., withholders=c)``. (Reusing
the other peers' revealed nonces for the re-draw would instead let it pick among 2^c outcomes.)

The transcript (peers, every attempt's signed commitments, list signatures, nonces and withheld
peers, the seed and the committee) is public; ``verify`` recomputes it against the registry the
verifier holds. A registry carried in the transcript proves nothing (whoever wrote the transcript
chose it); the copy a local run records is only for checking that run against itself.
"""

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ..common.errors import BadParameter, EngineError, KeyFileError
from ..common.files import check_not_writable_by_others
from ..common.names import NAME_RULE, is_name

VERSION = 'mpc-market committee lottery v2'
DOMAIN = VERSION.encode()
MIN_SIZE, MAX_SIZE = 3, 11
DEFAULT_SIZE = 5      # committee size when there are more peers than fit in one session
ALL_PEERS_UP_TO = 7   # up to this many peers, every peer runs a node unless a size is asked for
NONCE_BYTES = 32
MAX_PEERS = 10_000    # bounds a transcript: 2 signature checks per peer and attempt
# The first draw and at most 3 re-draws, then the round has no committee: each re-draw is one more
# chance for a withholding coalition, so few (see capture_probability); 3 tolerate 3 peers failing
# between signing the list and revealing.
MAX_ATTEMPTS = 4
MAX_FILE_BYTES = 32 << 20  # a full transcript of MAX_PEERS peers and MAX_ATTEMPTS attempts is ~18 MB

_HEX = {n: re.compile(f'[0-9a-f]{{{2 * n}}}') for n in (32, 64)}
_TOP = {'lottery', 'round', 'requested', 'peers', 'attempts', 'seed', 'committee'}
_ATTEMPT = {'commitments', 'list_signatures', 'nonces', 'withheld'}


def _framed(*parts: bytes) -> bytes:
    """Length-prefixed concatenation, so no two different part lists hash alike."""
    return b''.join(len(p).to_bytes(4, 'big') + p for p in parts)


def _number(value: int | None) -> bytes:
    return b'' if value is None else value.to_bytes(4, 'big')


def commitment(round_id: str, attempt: int, peer: str, nonce: bytes) -> str:
    """A peer's commitment to its nonce in one attempt of a round's lottery (hex SHA-256).

    Args:
        round_id: the round.
        attempt: 0 for the first draw, k for the k-th re-draw.
        peer: the committing peer.
        nonce: its secret nonce (32 bytes).

    Returns:
        64 hex digits.
    """
    return hashlib.sha256(_framed(DOMAIN, b'commit', round_id.encode(), _number(attempt), peer.encode(),
                                  nonce)).hexdigest()


def commitment_message(round_id: str, attempt: int, peer: str, commitment_hex: str) -> bytes:
    """The bytes a peer signs to publish its commitment."""
    return _framed(DOMAIN, b'commitment signature', round_id.encode(), _number(attempt), peer.encode(),
                   bytes.fromhex(commitment_hex))


def list_digest(round_id: str, requested: int | None, attempt: int, previous: bytes,
                commitments: Mapping[str, str]) -> bytes:
    """The digest every peer of an attempt signs before any nonce is revealed.

    Args:
        round_id: the round.
        requested: the committee size asked for, or None for the default rule.
        attempt: 0, 1, ...
        previous: ``withheld_digest`` of the previous attempt, b'' for attempt 0.
        commitments: peer -> commitment (hex) of every peer of this attempt.

    Returns:
        32 bytes.
    """
    entries = [part for p in sorted(commitments) for part in (p.encode(), bytes.fromhex(commitments[p]))]
    return hashlib.sha256(_framed(DOMAIN, b'commitment list', round_id.encode(), _number(requested),
                                  _number(attempt), previous, *entries)).digest()


def list_message(peer: str, digest: bytes) -> bytes:
    """The bytes a peer signs to fix an attempt's commitment list."""
    return _framed(DOMAIN, b'list signature', peer.encode(), digest)


def withheld_digest(digest: bytes, withheld: Sequence[str]) -> bytes:
    """An aborted attempt's outcome (its list digest and who withheld), bound into the next list."""
    return hashlib.sha256(_framed(DOMAIN, b'withheld', digest, *(p.encode() for p in sorted(withheld)))).digest()


def seed_of(digest: bytes, nonces: Mapping[str, bytes]) -> bytes:
    """The lottery seed: the signed list digest and every peer's nonce, in peer order."""
    return hashlib.sha256(_framed(DOMAIN, b'seed', digest,
                                  *(part for p in sorted(nonces) for part in (p.encode(), nonces[p])))).digest()


def rank(seed: bytes, peers: Sequence[str]) -> list[str]:
    """Peers in lottery order: by SHA-256(seed, peer), ties (impossible in practice) by name."""
    return sorted(peers, key=lambda p: (hashlib.sha256(_framed(seed, p.encode())).digest(), p))


def committee_size(peers: int, requested: int | None = None) -> int:
    """Nodes of an S1 round of this many peers (every peer up to 7, else 5, or as requested).

    Args:
        peers: peers taking part in the draw.
        requested: the committee size asked for (``--committee``), or None.

    Returns:
        The committee size.

    Raises:
        EngineError: the size is outside 3..11 or above the number of peers, or there are more
            than MAX_PEERS peers.
    """
    if peers > MAX_PEERS:
        raise EngineError(f'an S1 lottery takes at most {MAX_PEERS} peers (there are {peers})')
    if requested is None:
        requested = peers if peers <= ALL_PEERS_UP_TO else DEFAULT_SIZE
    if not MIN_SIZE <= requested <= min(peers, MAX_SIZE):
        raise EngineError(f'an S1 committee of {requested} nodes needs {MIN_SIZE}..{MAX_SIZE} nodes and at least '
                          f'as many peers (there are {peers})')
    return requested


def _public_hex(key: ed25519.Ed25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def peer_keys(peers: Sequence[str], keys_dir: str | None = None) \
        -> tuple[dict[str, ed25519.Ed25519PrivateKey], dict[str, ed25519.Ed25519PublicKey]]:
    """Each peer's signing key and the registry of their public keys.

    Args:
        peers: the round's peers.
        keys_dir: a ``keys participants`` directory holding every peer's key and registry.json,
            whose participants must be exactly the peers; None: a fresh key per peer (a local run
            that plays every peer).

    Returns:
        (peer -> Ed25519PrivateKey, peer -> Ed25519PublicKey).

    Raises:
        EngineError: the registry's participants are not the peers.
        KeyFileError: a key or the registry cannot be loaded.
    """
    if keys_dir is None:
        private = {p: ed25519.Ed25519PrivateKey.generate() for p in peers}
        return private, {p: k.public_key() for p, k in private.items()}
    from ..common.keys import load_participant_key, load_registry
    registry = load_registry(os.path.join(keys_dir, 'registry.json'))
    if set(registry) != set(peers):
        raise EngineError(f'the S1 peers are the registry\'s participants: {len(set(peers) - set(registry))} peers '
                          f'have no registered key, {len(set(registry) - set(peers))} registered have no orders')
    return {p: load_participant_key(keys_dir, p) for p in peers}, registry


Withhold = Callable[[int, list[str], dict[str, bytes], list[str]], set[str]]


def draw(round_id: str, peers: Sequence[str], requested: int | None = None,
         keys: Mapping[str, ed25519.Ed25519PrivateKey] | None = None,
         nonce_of: Callable[[str], bytes] | None = None, withhold: Withhold | None = None) -> dict:
    """Run the lottery as every peer (commit, fix the list, reveal) and return its public transcript.

    Args:
        round_id: the round.
        peers: the round's peers (the registry's participants).
        requested: the committee size asked for, or None for the default rule.
        keys: peer -> Ed25519PrivateKey; None: a fresh key per peer (``peer_keys``).
        nonce_of: nonce_of(peer) -> 32 bytes, each peer's secret draw (os.urandom by default),
            called once per peer and attempt.
        withhold: withhold(attempt, peers, nonces, committee) -> peers that do not reveal, called
            with every nonce and the committee they would draw (a coalition that reveals last);
            None: everyone reveals.

    Returns:
        The transcript (JSON-serialisable): see ``verify``.

    Raises:
        EngineError: too few peers for the committee, or more than MAX_ATTEMPTS attempts.
        BadParameter: withhold named someone who is not a peer of the attempt.
    """
    nonce_of = nonce_of or (lambda peer: os.urandom(NONCE_BYTES))
    keys = keys if keys is not None else peer_keys(peers)[0]
    remaining, previous, attempts = sorted(peers), b'', []
    for attempt in range(MAX_ATTEMPTS):
        size = committee_size(len(remaining), requested)
        nonces = {p: nonce_of(p) for p in remaining}
        commitments = {p: commitment(round_id, attempt, p, nonces[p]) for p in remaining}
        signed = {p: {'commitment': c, 'signature': keys[p].sign(commitment_message(round_id, attempt, p, c)).hex()}
                  for p, c in commitments.items()}
        digest = list_digest(round_id, requested, attempt, previous, commitments)
        list_signatures = {p: keys[p].sign(list_message(p, digest)).hex() for p in remaining}
        seed = seed_of(digest, nonces)
        withheld = sorted(withhold(attempt, list(remaining), dict(nonces), rank(seed, remaining)[:size])
                          if withhold else ())
        if not set(withheld) <= set(remaining):
            raise BadParameter('withhold', 'withhold must return peers of the attempt')
        attempts.append({'commitments': signed, 'list_signatures': list_signatures,
                         'nonces': {p: n.hex() for p, n in nonces.items() if p not in withheld},
                         'withheld': withheld})
        if not withheld:
            return {'lottery': VERSION, 'round': round_id, 'requested': requested, 'peers': sorted(peers),
                    'attempts': attempts, 'seed': seed.hex(), 'committee': rank(seed, remaining)[:size],
                    'registry': {p: {'sign': _public_hex(keys[p].public_key())} for p in sorted(peers)}}
        previous = withheld_digest(digest, withheld)
        remaining = [p for p in remaining if p not in withheld]
        committee_size(len(remaining), requested)
    raise EngineError(f'the S1 lottery of round {round_id} was aborted {MAX_ATTEMPTS} times by peers withholding '
                      'their nonces; the round has no committee')


# -- verification -------------------------------------------------------------------------------
def _fail(message: str) -> NoReturn:
    raise EngineError(f'committee transcript: {message}')


def _kind(value: object) -> str:
    return type(value).__name__


def _object(value: object, what: str, keys: set[str] | None = None, optional: Iterable[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        _fail(f'{what} must be an object, not {_kind(value)}')
    if keys is not None:
        missing, unknown = keys - set(value), set(value) - keys - set(optional)
        if missing or unknown:
            _fail(f'{what} must have exactly the fields {", ".join(sorted(keys))} '
                  f'(missing {len(missing)}, unknown {len(unknown)})')
    return value


def _names(value: object, what: str, limit: int = MAX_PEERS) -> list[str]:
    if not isinstance(value, list) or len(value) > limit or not all(is_name(p) for p in value):
        _fail(f'{what} must be a list of at most {limit} peer names ({NAME_RULE})')
    if value != sorted(set(value)):
        _fail(f'{what} must be sorted and without repeats')
    return value


def _hex(value: object, nbytes: int, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX[nbytes].fullmatch(value):
        _fail(f'{what} must be exactly {nbytes} bytes in lowercase hex ({2 * nbytes} digits)')
    return bytes.fromhex(value)


def _peer_map(value: object, what: str, peers: Collection[str]) -> dict[str, Any]:
    value = _object(value, what)
    if set(value) != set(peers):
        _fail(f'{what} must name exactly the {len(peers)} peers of the attempt '
              f'({len(set(peers) - set(value))} missing, {len(set(value) - set(peers))} others)')
    return value


def _check(key: ed25519.Ed25519PublicKey, signature: bytes, message: bytes, failure: str) -> None:
    try:
        key.verify(signature, message)
    except InvalidSignature:
        _fail(failure)


def verify(transcript: object, registry: Mapping[str, ed25519.Ed25519PublicKey], round_id: str | None = None) \
        -> list[str]:
    """Recompute the committee from a transcript, against the registry the verifier holds.

    Checks the shape of everything, that the peers are exactly the registry's participants, every
    commitment and list signature against the registry, that the withheld peers of each aborted
    attempt are excluded from the next and bound into its signed list, every nonce (exactly 32
    bytes) against its commitment, the committee size against ``committee_size``, the seed and
    the ranking.

    Args:
        transcript: the parsed JSON of a transcript (``draw``'s output), any shape.
        registry: peer -> Ed25519PublicKey, the round's registry as the verifier holds it.
        round_id: the round the verifier expects, or None to accept the transcript's.

    Returns:
        The committee, in node order.

    Raises:
        EngineError: one line naming the first thing that is malformed or does not match.
    """
    t = _object(transcript, 'the transcript', _TOP, optional=('registry',))
    if t['lottery'] != VERSION:
        _fail(f'not a signed lottery transcript ({VERSION!r}); an unsigned one proves nothing')
    if not is_name(t['round']):
        _fail(f'round must be a name ({NAME_RULE})')
    if round_id is not None and t['round'] != round_id:
        _fail(f'the transcript is of round {t["round"]}, not {round_id}')
    requested = t['requested']
    if requested is not None and (type(requested) is not int or not MIN_SIZE <= requested <= MAX_SIZE):
        _fail(f'requested must be null or an integer {MIN_SIZE}..{MAX_SIZE}')
    peers = _names(t['peers'], 'peers')
    if set(peers) != set(registry):
        _fail(f'the peers are not the registry\'s participants ({len(set(registry) - set(peers))} registered '
              f'peers left out, {len(set(peers) - set(registry))} unregistered)')
    if 'registry' in t:  # a copy is only compared: the registry the verifier holds decides
        copy = _object(t['registry'], 'registry')
        for p in sorted(set(copy) & set(peers)):
            entry = copy[p]
            if not isinstance(entry, dict) or entry.get('sign') != _public_hex(registry[p]):
                _fail(f'the transcript\'s key of {p} is not its key in the registry you hold')
    attempts = t['attempts']
    if not isinstance(attempts, list) or not 1 <= len(attempts) <= MAX_ATTEMPTS:
        _fail(f'attempts must be a list of 1..{MAX_ATTEMPTS} attempts')
    remaining, previous = list(peers), b''
    for k, a in enumerate(attempts):
        _object(a, f'attempt {k}', _ATTEMPT)
        size = _size(len(remaining), requested, k)
        signed = _peer_map(a['commitments'], f'attempt {k}: commitments', remaining)
        commitments = {}
        for p in remaining:
            entry = _object(signed[p], f'attempt {k}: commitment of {p}', {'commitment', 'signature'})
            _hex(entry['commitment'], 32, f'attempt {k}: commitment of {p}')
            commitments[p] = entry['commitment']
            _check(registry[p], _hex(entry['signature'], 64, f'attempt {k}: commitment signature of {p}'),
                   commitment_message(t['round'], k, p, entry['commitment']),
                   f'attempt {k}: the commitment of {p} is not signed by its registered key')
        digest = list_digest(t['round'], requested, k, previous, commitments)
        sigs = _peer_map(a['list_signatures'], f'attempt {k}: list_signatures', remaining)
        for p in remaining:
            _check(registry[p], _hex(sigs[p], 64, f'attempt {k}: list signature of {p}'), list_message(p, digest),
                   f'attempt {k}: {p} did not sign this commitment list (round, size asked for, attempt, previous '
                   'outcome and every commitment) with its registered key')
        withheld = _names(a['withheld'], f'attempt {k}: withheld')
        if not set(withheld) <= set(remaining):
            _fail(f'attempt {k}: a withheld peer is not a peer of the attempt')
        last = k == len(attempts) - 1
        if last == bool(withheld):
            _fail(f'attempt {k}: ' + ('the last attempt has withheld peers' if last else
                                      'an attempt before the last names no withheld peer'))
        revealed = [p for p in remaining if p not in withheld]
        nonces = {p: _hex(n, NONCE_BYTES, f'attempt {k}: nonce of {p}')
                  for p, n in _peer_map(a['nonces'], f'attempt {k}: nonces', revealed).items()}
        for p in revealed:
            if commitment(t['round'], k, p, nonces[p]) != commitments[p]:
                _fail(f'attempt {k}: peer {p} revealed a nonce that does not match its commitment')
        previous, remaining = withheld_digest(digest, withheld), revealed
    seed = seed_of(digest, nonces)
    if _hex(t['seed'], 32, 'seed') != seed:
        _fail('the seed is not the hash of the signed list and the revealed nonces')
    claimed = t['committee']
    if not isinstance(claimed, list) or len(claimed) > MAX_SIZE or not all(is_name(p) for p in claimed) \
            or len(set(claimed)) != len(claimed):
        _fail(f'committee must be a list of at most {MAX_SIZE} distinct peer names')
    if len(claimed) != size:
        _fail(f'the committee has {len(claimed)} seats; a draw among {len(remaining)} peers seats {size}')
    committee = rank(seed, remaining)[:size]
    if committee != t['committee']:
        _fail('the committee is not the lottery\'s draw')
    return committee


def _size(peers: int, requested: int | None, attempt: int) -> int:
    try:
        return committee_size(peers, requested)
    except EngineError as e:
        _fail(f'attempt {attempt}: {e}')


# -- files --------------------------------------------------------------------------------------
def read_json(path: str, what: str) -> object:
    """A JSON file of at most MAX_FILE_BYTES, any shape.

    Args:
        path: the file.
        what: what it is, for the message.

    Returns:
        The parsed document.

    Raises:
        EngineError: unreadable, too large, not UTF-8 JSON, or nested too deeply to parse.
    """
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise EngineError(f'the {what} is larger than {MAX_FILE_BYTES >> 20} MiB')
        return json.loads(data.decode('utf-8'))
    except OSError as e:
        raise EngineError(f'cannot read the {what} ({e.strerror})') from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError and too many digits are ValueErrors
        raise EngineError(f'the {what} is not JSON ({str(e)[:120]})') from None
    except RecursionError:
        raise EngineError(f'the {what} is nested too deeply') from None


def load_registry(path: str) -> dict[str, ed25519.Ed25519PublicKey]:
    """The verifier's registry of the round's peers: ``{peer: {"sign": hex, ...}}``, as the
    registry.json of ``keys participants`` (other fields, such as "kex", are ignored).

    Args:
        path: the registry file; refused if group- or world-writable.

    Returns:
        peer -> Ed25519PublicKey.

    Raises:
        KeyFileError: unreadable, writable by others, or not a registry of valid keys.
    """
    try:
        check_not_writable_by_others(path, 'peer registry')
        entries = read_json(path, 'peer registry')
    except (OSError, EngineError) as e:
        raise KeyFileError(f'{path}: {e}') from None
    if not isinstance(entries, dict) or not 1 <= len(entries) <= MAX_PEERS or not all(
            is_name(p) and isinstance(e, dict) and isinstance(e.get('sign'), str) and _HEX[32].fullmatch(e['sign'])
            for p, e in entries.items()):
        raise KeyFileError(f'{path}: expected {{peer: {{"sign": 64 hex digits, ...}}}} of 1..{MAX_PEERS} peers')
    try:
        return {p: ed25519.Ed25519PublicKey.from_public_bytes(bytes.fromhex(e['sign'])) for p, e in entries.items()}
    except ValueError as e:
        raise KeyFileError(f'{path}: not an Ed25519 public key ({e})') from None


def transcript_registry(transcript: Mapping) -> dict[str, ed25519.Ed25519PublicKey]:
    """The public keys a transcript records (a local run's own keys). Verifying a transcript
    against them shows only that it is consistent with itself, not who drew it.

    Raises:
        EngineError: the transcript records no valid keys.
    """
    copy = transcript.get('registry') if isinstance(transcript, Mapping) else None
    if not isinstance(copy, Mapping):
        _fail('no valid registry copy in the transcript')
    try:
        return {p: ed25519.Ed25519PublicKey.from_public_bytes(_hex(e['sign'], 32, f'key of {p}'))
                for p, e in copy.items()}
    except (AttributeError, KeyError, TypeError, ValueError):
        _fail('no valid registry copy in the transcript')


# -- what a coalition can do -------------------------------------------------------------------
def _tail(peers: int, corrupt: int, size: int) -> Fraction:
    """P(more than (size-1)//2 of `size` seats drawn uniformly from `peers` go to `corrupt` ones)."""
    threshold = (size - 1) // 2
    return Fraction(sum(math.comb(corrupt, k) * math.comb(peers - corrupt, size - k)
                        for k in range(threshold + 1, size + 1)), math.comb(peers, size))


def capture_probability(peers: int, corrupt: int, size: int, withholders: int = 0) -> float:
    """Chance that a coalition of `corrupt` peers wins a majority of the committee (more than its
    threshold (size-1)//2 seats), the condition under which it could open the shares.

    One draw seats `size` of the peers uniformly without replacement: a hypergeometric tail p.
    With `withholders` of its members willing to withhold their nonce after seeing every other
    one, the coalition rejects a draw that does not capture the committee and forces a fresh one
    among the peers left, one member fewer each time: at most min(withholders, corrupt,
    MAX_ATTEMPTS - 1) re-draws, each independent, so the chance is
    1 - prod_k (1 - p(peers - k, corrupt - k, size)), no more than (withholders + 1) * p. This
    strategy (withhold one member while the draw does not capture) is the best a coalition has:
    withholding more at once only shrinks it, and a draw it keeps cannot be changed.

    Args:
        peers: peers in the round's lottery.
        corrupt: peers of the coalition.
        size: seats drawn (the committee size asked for; every re-draw seats as many).
        withholders: coalition members willing to be excluded to force a re-draw.

    Returns:
        The probability, 0..1.
    """
    miss = Fraction(1)
    for k in range(min(withholders, corrupt, MAX_ATTEMPTS - 1) + 1):
        if peers - k < size:
            break
        miss *= 1 - _tail(peers - k, corrupt - k, size)
    return float(1 - miss)
