"""The one canonical byte format every signed statement uses (domain-separated, sorted JSON).
"""

import json
import re


def canonical_bytes(domain: bytes, fields: object) -> bytes:
    """What gets signed: a domain separator and the canonical JSON of the fields."""
    return domain + json.dumps(fields, sort_keys=True, separators=(',', ':')).encode()



SHA256_HEX = re.compile(r'[0-9a-f]{64}')
