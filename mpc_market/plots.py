"""Plots of a market for notebooks and reports: a slot's supply and demand curves with the clearing
point (``plot_market``) and the prices and volumes of a cleared day (``plot_prices``).

``plot_market`` draws the book in the clear: use it on orders you hold (your own community's test
data, a generated community, the plaintext reference), never as something the market nodes reveal.
matplotlib draws off-screen (Agg) when no backend was chosen.
"""

from __future__ import annotations

from typing import Any

from .common.errors import BadParameter
from .market.book import Book
from .market.config import MarketConfig
from .market.frames import price
from .market.results import ClearingResult
from .market.rule import choose_level, curves

__all__ = ['plot_market', 'plot_prices']


def _axes(ax: Any, size: tuple[float, float]) -> tuple[Any, Any]:
    import matplotlib
    if ax is not None:
        return ax.figure, ax
    if matplotlib.get_backend().lower() not in ('agg', 'module://matplotlib_inline.backend_inline'):
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=size)
    return fig, ax


def _time_label(config: MarketConfig, slot: int) -> str:
    text = config.slot_start_text(slot)
    return f'slot {slot} ({text.replace("T", " ")[:16]} UTC)' if text else f'slot {slot}'


def plot_market(book: Book, slot: int, path: str | None = None, ax: Any = None) -> Any:
    """Supply and demand of one slot as step curves over the price levels, with the clearing point.

    Args:
        book: the orders (in the clear: see the module docstring).
        slot: the slot to draw.
        path: write a PNG there (else only return the figure).
        ax: draw into these matplotlib axes instead of a new figure.

    Returns:
        The matplotlib Figure.

    Raises:
        BadParameter: the book has no such slot.
    """
    if slot not in book.slot_index:
        raise BadParameter('slot', f'the book has no slot {slot} (its slots: {book.slots[0]}..{book.slots[-1]})')
    config, k = book.config, book.config.levels
    entries = []
    for order in book.orders:
        position = book.positions[(order.participant, order.slot)][0]
        if order.slot == slot and position is not None:
            entries.append(('sell', position, order.energy_wh) if position < k else ('buy', position - k,
                                                                                     order.energy_wh))
    supply, demand = curves(entries, k)
    level, volume = choose_level(supply, demand)
    prices = [float(config.level_price(j)) for j in range(k)]
    fig, ax = _axes(ax, (7, 4.5))
    ax.step([s / 1000 for s in supply], prices, where='post', label='supply (sells at or below the price)')
    ax.step([d / 1000 for d in demand], prices, where='post', label='demand (buys at or above the price)')
    if level is not None:
        clearing = config.level_price(level)
        ax.plot([volume / 1000], [float(clearing)], 'o', color='black', zorder=3,
                label=f'clearing: {clearing} {config.currency}/kWh, {volume / 1000:g} kWh')
    ax.set_xlabel('energy (kWh)')
    ax.set_ylabel(f'price ({config.currency}/kWh)')
    ax.set_title(f'{_time_label(config, slot)}: {len(entries)} orders' + ('' if level is not None else ', no trade'))
    ax.legend(loc='best', fontsize='small')
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig


def plot_prices(result: ClearingResult, config: MarketConfig | None = None, path: str | None = None) -> Any:
    """The clearing price (with the floor and ceiling band) and the traded energy of every slot.

    Args:
        result: a ClearingResult (mpc_market.clear attaches its market).
        config: its market, when the result carries none.
        path: write a PNG there.

    Returns:
        The matplotlib Figure.

    Raises:
        BadParameter: no market is known for the result.
    """
    config = config or result.market
    if config is None:
        raise BadParameter('config', 'this result carries no market: pass config=')
    import matplotlib
    if matplotlib.get_backend().lower() not in ('agg', 'module://matplotlib_inline.backend_inline'):
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    timed = config.start is not None
    x_of = (lambda s: config.slot_start(s)) if timed else (lambda s: s)
    fig, (ax_price, ax_volume) = plt.subplots(2, 1, sharex=True, figsize=(9, 5))
    traded = [s for s in result.slots if s.price_units is not None]
    ax_price.step([x_of(s.slot) for s in traded], [float(price(config, s.price_units) or 0) for s in traded],
                  where='mid', label='clearing price')
    schemes = [s for s in result.slots if s.buy_price_units is not None]
    if schemes:
        ax_price.step([x_of(s.slot) for s in schemes], [float(price(config, s.buy_price_units) or 0) for s in schemes],
                      where='mid', label='buy price')
        ax_price.step([x_of(s.slot) for s in schemes], [float(price(config, s.sell_price_units) or 0) for s in schemes],
                      where='mid', label='sell price')
    ax_price.axhline(float(config.price_floor), color='grey', linestyle=':', label='feed-in tariff (floor)')
    ax_price.axhline(float(config.price_ceiling), color='grey', linestyle='--', label='retail price (ceiling)')
    ax_price.set_ylabel(f'{config.currency}/kWh')
    ax_price.legend(loc='upper right', fontsize='small')
    width = config.slot_minutes / (24 * 60) * 0.9 if timed else 0.9
    ax_volume.bar([x_of(s.slot) for s in result.slots], [s.traded_wh / 1000 for s in result.slots], width=width)
    ax_volume.set_ylabel('traded (kWh)')
    ax_volume.set_xlabel('slot start (UTC)' if timed else f'slot ({config.slot_minutes} min)')
    if timed:
        first, last = (config.slot_start(s) for s in (result.slots[0].slot, result.slots[-1].slot))
        if first is not None and last is not None and (last - first).days < 2:  # hours of a day or two
            import matplotlib.dates as mdates
            ax_volume.xaxis.set_major_formatter(mdates.DateFormatter('%H:%M', tz=first.tzinfo))
            ax_volume.set_xlabel(f'slot start (UTC), from {first:%Y-%m-%d %H:%M}')
        else:
            fig.autofmt_xdate()
    fig.suptitle(f'{len(traded)} of {len(result.slots)} slots trade locally')
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=110)
    return fig
