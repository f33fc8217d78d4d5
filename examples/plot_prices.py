"""Plot a day of clearing prices and traded volumes of a generated community.

    python examples/plot_prices.py [--participants 200] [--out prices.png]

Clears 96 slots with the plaintext reference (pass --engine mpc for the secure engine; the
numbers are identical) and draws price and volume per slot, with the feed-in tariff and the
retail price as the band the local price lives in.
"""

import argparse
import tempfile

import matplotlib

matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

import mpc_market as mm  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--participants', type=int, default=200, help='households (default 200)')
    parser.add_argument('--slots', type=int, default=96, help='15-minute slots (default 96, one day)')
    parser.add_argument('--engine', choices=mm.ENGINES, default='plain', help='engine (default plain)')
    parser.add_argument('--out', default='prices.png', help='PNG to write (default prices.png)')
    args = parser.parse_args(argv)
    orders, config_path, _, _ = mm.write_community(tempfile.mkdtemp(prefix='mpc-market-example-'),
                                                   args.participants, args.slots, seed=3)
    book = mm.load_book(orders, config_path)
    result = mm.clear(book, engine=args.engine)
    cfg = book.config
    scale = 10 ** cfg.decimals
    traded = [s for s in result.slots if s.price_units is not None]

    fig, (ax_price, ax_volume) = plt.subplots(2, 1, sharex=True, figsize=(9, 5))
    ax_price.step([s.slot for s in traded], [s.price_units / scale for s in traded], where='mid',
                  label='clearing price')
    ax_price.axhline(cfg.floor_units / scale, color='grey', linestyle=':', label='feed-in tariff (floor)')
    ax_price.axhline(cfg.ceiling_units / scale, color='grey', linestyle='--', label='retail price (ceiling)')
    ax_price.set_ylabel('currency / kWh')
    ax_price.legend(loc='upper right', fontsize='small')
    ax_volume.bar([s.slot for s in result.slots], [s.traded_wh / 1000 for s in result.slots])
    ax_volume.set_ylabel('traded kWh')
    ax_volume.set_xlabel('slot (15 min)')
    fig.suptitle(f'{len(book.participants)} households, {len(traded)} of {len(result.slots)} slots trade locally')
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
