"""Private state on disk: directories 0700, files 0600, whatever the caller's umask.

Node, broker and aggregator keep shares, envelopes, signatures and round state; nobody else on
the machine may read them. Each daemon calls make_private_dir on its data directory before it
opens anything there: the process umask becomes 077 (SQLite's WAL and shm files, run
directories and logs are created private) and anything already there is tightened.

Files others must be able to trust (the participant registry, the CA certificate, the deployment
manifest) are checked with check_not_writable_by_others before they are read: another local
user able to rewrite one could register its own key under a participant's name, or its own CA.
"""

import os
import stat

from .errors import KeyFileError

__all__ = ['make_private_dir', 'check_not_writable_by_others']


def make_private_dir(path: str) -> str:
    """Create path (0700) if needed, set umask 077, and make everything under it 0700/0600."""
    os.umask(0o077)
    os.makedirs(path, mode=0o700, exist_ok=True)
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o700)
        for name in files:
            full = os.path.join(root, name)
            if not os.path.islink(full) and stat.S_ISREG(os.lstat(full).st_mode):
                os.chmod(full, 0o600)
    return path


def check_not_writable_by_others(path: str, what: str) -> None:
    """Refuse a trusted file that someone other than its owner (or root) could have rewritten.

    The file and the directory holding it (both the one named and, for a symbolic link, the
    target's) must have no group or world write bit and belong to this user or root; otherwise
    another local user could have replaced the file.

    Args:
        path: the file about to be read (a registry, CA certificate, manifest).
        what: what it is, for the message (e.g. 'participant registry').

    Raises:
        KeyFileError: the file or its directory is group- or world-writable, or owned by another
            non-root user; one line naming the path and the fix.
        OSError: the file or its directory cannot be examined (e.g. it does not exist).
    """
    real = os.path.realpath(path)
    me = os.geteuid()
    for target in dict.fromkeys((real, os.path.dirname(os.path.abspath(path)), os.path.dirname(real))):
        info = os.stat(target)
        label = what if target == real else f"directory of the {what}"
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise KeyFileError(f'{target}: the {label} is writable by group or others (mode '
                               f'{stat.S_IMODE(info.st_mode):04o}); refusing to trust it (chmod go-w {target})')
        if info.st_uid not in (me, 0):
            raise KeyFileError(f'{target}: the {label} belongs to another user (uid {info.st_uid}); refusing '
                               'to trust it')
