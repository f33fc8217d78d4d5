"""Private state on disk: directories 0700, files 0600, whatever the caller's umask.

Node, broker and aggregator keep shares, envelopes, signatures and round state; nobody else on
the machine may read them. Each daemon calls make_private_dir on its data directory before it
opens anything there: the process umask becomes 077 (SQLite's WAL and shm files, run
directories and logs are created private) and anything already there is tightened.
"""

import os
import stat

__all__ = ['make_private_dir']


def make_private_dir(path):
    """Create path (0700) if needed, set umask 077, and make everything under it 0700/0600."""
    os.umask(0o077)
    os.makedirs(path, mode=0o700, exist_ok=True)
    for root, dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full) and stat.S_ISREG(os.lstat(full).st_mode):
                os.chmod(full, 0o600)
    return path
