"""Plot a day of clearing prices and traded volumes of a generated community, and one slot's market.

    python examples/plot_prices.py [--participants 200] [--out prices.png] [--market-out slot.png]

Clears the slots with the plaintext reference (pass --engine mpc for the secure engine; the
numbers are identical) and draws price and volume per slot with the feed-in tariff and the
retail price as the band the local price lives in (mm.plot_prices), then the supply and demand
of the busiest slot with its clearing point (mm.plot_market, drawn from the generated orders).
"""

import argparse
import tempfile

import mpc_market as mm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--participants', type=int, default=200, help='households (default 200)')
    parser.add_argument('--slots', type=int, default=96, help='15-minute slots (default 96, one day)')
    parser.add_argument('--engine', choices=mm.ENGINES, default='plain', help='engine (default plain)')
    parser.add_argument('--out', default='prices.png', help='PNG of the day (default prices.png)')
    parser.add_argument('--market-out', default='slot.png', help='PNG of the busiest slot (default slot.png)')
    args = parser.parse_args(argv)
    orders, config_path, _, _ = mm.write_community(tempfile.mkdtemp(prefix='mpc-market-example-'),
                                                   args.participants, args.slots, seed=3)
    book = mm.load_book(orders, config_path)
    result = mm.clear(book, engine=args.engine)
    mm.plot_prices(result, path=args.out)
    busiest = max(result.slots, key=lambda s: s.traded_wh)
    mm.plot_market(book, busiest.slot, path=args.market_out)
    print(f'wrote {args.out} and {args.market_out} (slot {busiest.slot})')


if __name__ == '__main__':
    main()
