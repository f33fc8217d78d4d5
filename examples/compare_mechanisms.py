"""Compare the market mechanisms on one community: what each household pays against the retailer.

    python examples/compare_mechanisms.py [--participants 100] [--slots 8] [--engine plain|mpc]

Settles the same orders and meter readings under the double auction and the three community
pricing schemes (supply-demand ratio, mid-market rate, bill sharing) and prints the community's
total bill, its saving against buying everything from the retailer, and the spread of savings.
"""

import argparse
import tempfile

import mpc_market as mm


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--participants', type=int, default=100, help='households (default 100)')
    parser.add_argument('--slots', type=int, default=8, help='15-minute slots (default 8)')
    parser.add_argument('--engine', choices=mm.ENGINES, default='plain', help='engine (default plain)')
    args = parser.parse_args(argv)
    out = tempfile.mkdtemp(prefix='mpc-market-example-')
    orders, config_path, _, readings_path = mm.write_community(out, args.participants, args.slots, seed=2)
    config = mm.load_config(config_path)
    readings = mm.load_meter_readings(readings_path, config)

    print(f'{"mechanism":<15} {"total bill":>12} {"retailer only":>14} {"saving":>10} '
          f'{"min saving":>11} {"max saving":>11}')
    for mechanism in mm.MECHANISMS:
        book = mm.load_book(orders, config, mechanism=mechanism, readings=readings)
        result = mm.settle(book, readings, engine=args.engine)
        total = sum(b.total_amount for b in result.bills)
        retailer = sum(b.retailer_only_amount for b in result.bills)
        savings = [b.saving for b in result.bills]
        fmt = config.format_amount
        print(f'{mechanism:<15} {fmt(total):>12} {fmt(retailer):>14} {fmt(retailer - total):>10} '
              f'{fmt(min(savings)):>11} {fmt(max(savings)):>11}')


if __name__ == '__main__':
    main()
