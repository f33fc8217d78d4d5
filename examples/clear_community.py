"""Clear a generated community under MPC and check it against the plaintext reference.

    python examples/clear_community.py [--participants 60] [--slots 4] [--out DIR]

Writes the community's files into DIR (a temporary directory by default), clears it with three
market node processes, and prints each slot's public outcome and one participant's own rows.
"""

import argparse
import tempfile

import mpc_market as mm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--participants', type=int, default=60, help='households (default 60)')
    parser.add_argument('--slots', type=int, default=4, help='15-minute slots (default 4)')
    parser.add_argument('--out', help='directory for the community files (default: a temporary one)')
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix='mpc-market-example-')

    orders, config, count, _ = mm.write_community(out, args.participants, args.slots, seed=1)
    book = mm.load_book(orders, config)
    print(f'{count} orders of {len(book.participants)} participants in {len(book.slots)} slots ({out})')

    secure = mm.clear(book, engine='mpc', nodes=3)
    reference = mm.clear(book, engine='plain')
    assert secure.slots == reference.slots and secure.rows == reference.rows, 'MPC differs from the reference'

    cfg = book.config
    print('slot  price   traded_wh  residual_wh')
    for s in secure.slots:
        price = cfg.format_price(s.price_units) if s.price_units is not None else '-'
        print(f'{s.slot:>4}  {price:>6}  {s.traded_wh:>9}  {s.residual_wh:>11}')
    owner = book.participants[0]
    print(f'{owner} alone learns its rows:')
    for r in secure.rows:
        if r.participant == owner:
            print(f'  slot {r.slot}: {r.side} {r.energy_wh} Wh, matched {r.matched_wh}, '
                  f'amount {cfg.format_amount(r.amount)} ({r.status})')
    print(f"MPC == reference; {secure.stats['total_s']:.1f} s with {secure.stats['nodes']} nodes")


if __name__ == '__main__':
    main()
