"""Test-only malicious clients for the local MPC engine (the engine itself has no such hook).

``tamper_clients(monkeypatch, book, tamper)`` makes the participants that the local engine plays
cheat: ``tamper(node, rows, data)`` may change a chunk's plaintext vectors before sharing
(node None) or the shares sent to one node (node i), as a malicious client could.
"""

from mpc_market.market import book as book_module
from mpc_market.mpc import field as ff


def tamper_clients(monkeypatch, book, tamper, readings=False):
    """Patch the order (or, with readings=True, the meter-reading) encoding and the sharing."""
    pending = {}
    if readings:
        encode_readings = book_module.encode_readings

        def encode(the_book, net_of, rows, read=None):
            pending['rows'] = rows
            return tamper(None, rows, encode_readings(the_book, net_of, rows, read))
        monkeypatch.setattr(book_module, 'encode_readings', encode)
    else:
        encode_orders = book.encode

        def encode(rows):
            pending['rows'] = rows
            return tamper(None, rows, encode_orders(rows))
        monkeypatch.setattr(book, 'encode', encode)
    share_values = ff.share_values

    def share(values, threshold, parties):
        shares = share_values(values, threshold, parties)
        rows = pending.pop('rows', None)
        if rows is None:  # a vector this test does not tamper with
            return shares
        return [tamper(i, rows, s) for i, s in enumerate(shares)]
    monkeypatch.setattr(ff, 'share_values', share)
