"""Scenario S1 at any size: the peers draw the round's committee of market nodes by lottery.

Every peer commits to a random nonce (SHA-256 of round, peer and nonce) before any nonce is
revealed; the seed is the hash of the round and all revealed nonces, so no single peer controls
it: a peer that has committed can only abort, not choose. Peers are ranked by
SHA-256(seed, peer) and the first ``size`` run the market nodes; every other peer submits its
orders to them as a client. The transcript (commitments, nonces, seed, committee) is public, and
anyone can recompute the committee from it with ``verify``.
"""

import hashlib
import math
import os

from ..common.errors import EngineError

DOMAIN = b'mpc-market committee lottery v1'
MIN_SIZE, MAX_SIZE = 3, 11
DEFAULT_SIZE = 5      # committee size when there are more peers than fit in one session
ALL_PEERS_UP_TO = 7   # up to this many peers, every peer runs a node unless a size is asked for


def _framed(*parts):
    """Length-prefixed concatenation, so no two different part lists hash alike."""
    return b''.join(len(p).to_bytes(4, 'big') + p for p in parts)


def commitment(round_id, peer, nonce):
    return hashlib.sha256(_framed(DOMAIN, b'commit', round_id.encode(), peer.encode(), nonce)).hexdigest()


def seed_of(round_id, nonces):
    """The lottery seed: every peer's nonce, in peer order, with the round."""
    return hashlib.sha256(_framed(DOMAIN, b'seed', round_id.encode(),
                                  *(p.encode() + b'\0' + nonces[p] for p in sorted(nonces)))).digest()


def rank(seed, peers):
    """Peers in lottery order: by SHA-256(seed, peer), ties (impossible in practice) by name."""
    return sorted(peers, key=lambda p: (hashlib.sha256(_framed(seed, p.encode())).digest(), p))


def committee_size(peers, requested=None):
    """Nodes of an S1 round of this many peers (every peer up to 7, else 5, or as requested)."""
    if requested is None:
        requested = peers if peers <= ALL_PEERS_UP_TO else DEFAULT_SIZE
    if not MIN_SIZE <= requested <= min(peers, MAX_SIZE):
        raise EngineError(f'an S1 committee of {requested} nodes needs {MIN_SIZE}..{MAX_SIZE} nodes and at least '
                          f'as many peers (there are {peers})')
    return requested


def draw(round_id, peers, size, nonce_of=None):
    """Run the lottery for every peer (commit, then reveal) and return its public transcript.

    nonce_of(peer) -> 32 bytes is each peer's own secret draw (os.urandom by default)."""
    nonce_of = nonce_of or (lambda peer: os.urandom(32))
    nonces = {p: nonce_of(p) for p in peers}
    commitments = {p: commitment(round_id, p, nonces[p]) for p in peers}  # published before any reveal
    seed = seed_of(round_id, nonces)
    return {'round': round_id, 'size': size, 'commitments': commitments,
            'nonces': {p: n.hex() for p, n in nonces.items()}, 'seed': seed.hex(),
            'committee': rank(seed, peers)[:size]}


def verify(transcript):
    """Recompute the committee from a transcript; raise EngineError naming what does not match."""
    try:
        round_id, size = transcript['round'], int(transcript['size'])
        commitments, nonces = transcript['commitments'], {p: bytes.fromhex(n) for p, n in transcript['nonces'].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise EngineError(f'committee transcript: malformed ({e})') from None
    if set(commitments) != set(nonces):
        raise EngineError('committee transcript: the peers that committed and that revealed differ')
    for peer in sorted(nonces):
        if commitment(round_id, peer, nonces[peer]) != commitments[peer]:
            raise EngineError(f'committee transcript: peer {peer} revealed a nonce that does not match its commitment')
    seed = seed_of(round_id, nonces)
    if seed.hex() != transcript.get('seed'):
        raise EngineError('committee transcript: the seed is not the hash of the revealed nonces')
    committee = rank(seed, list(nonces))[:size]
    if committee != transcript.get('committee'):
        raise EngineError('committee transcript: the committee is not the lottery\'s draw')
    return committee


def capture_probability(peers, corrupt, size):
    """Chance that a coalition of `corrupt` peers wins a majority of the committee (more than its
    threshold (size-1)//2 seats), the condition under which it could open the shares: a
    hypergeometric tail, since the lottery draws `size` of the peers uniformly without replacement."""
    threshold = (size - 1) // 2
    total = math.comb(peers, size)
    return sum(math.comb(corrupt, k) * math.comb(peers - corrupt, size - k)
               for k in range(threshold + 1, size + 1)) / total
