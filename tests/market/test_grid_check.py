"""The congestion loop (mpc-market grid check) and generate --flex (docs/flexibility.md).

Worked example: simbench's 1-LV-rural1--2-sw (scenario 2: 0.47 MW of PV under a 0.16 MVA
transformer, no scaling needed) on midsummer 2016-06-21 overloads its transformer at midday
(up to 141 %); the DSO requests from the check, cleared with `flex clear --engine plain` against
the generated offers, relieve every slot (the power flow re-run on the adjusted positions).
"""

import csv
import importlib.util
import os

import pytest

from helpers import cli, load_simbench_once

HAVE_GRID = all(importlib.util.find_spec(name) is not None for name in ('simbench', 'pandapower'))
needs_grid = pytest.mark.skipif(not HAVE_GRID and not os.environ.get('MPC_MARKET_REQUIRE_GRID'),
                                reason="the grid extra is not installed (pip install -e '.[grid]')")
CODE = 'simbench:1-LV-rural1--2-sw'


def rows(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_generate_flex_is_seeded_bounded_and_loads(tmp_path):
    from mpc_market.market.config import load_config
    from mpc_market.market.flex import load_offers, load_requests
    for name in ('a', 'b'):
        cli('generate', '--participants', 60, '--flex', '--seed', 3, '--out', tmp_path / name, check=True)
    assert (tmp_path / 'a' / 'offers.csv').read_text() == (tmp_path / 'b' / 'offers.csv').read_text()
    cli('generate', '--participants', 60, '--out', tmp_path / 'c', '--seed', 3, check=True)
    assert (tmp_path / 'a' / 'orders.csv').read_text() == (tmp_path / 'c' / 'orders.csv').read_text()  # untouched
    config = load_config(str(tmp_path / 'a' / 'market.toml'))
    offers = load_offers(str(tmp_path / 'a' / 'offers.csv'), config)
    assert {o.direction for o in offers} == {'up', 'down'} and len(offers) > 500
    planned = {(r['participant'], int(r['slot'])): int(r['energy_wh']) * (1 if r['side'] == 'buy' else -1)
               for r in rows(tmp_path / 'a' / 'orders.csv')}
    assert all(o.volume_wh <= max(planned.get((o.participant, o.slot), 0), 0) for o in offers if o.direction == 'up')
    requests = load_requests(str(tmp_path / 'a' / 'requests.csv'), config)
    assert {r.buyer for r in requests} == {'dso', 'aggregator'}
    out = tmp_path / 'flex'
    assert cli('flex', 'clear', '--engine', 'plain', '--requests', tmp_path / 'a' / 'requests.csv', '--offers',
               tmp_path / 'a' / 'offers.csv', '--feeders', tmp_path / 'a' / 'feeders.csv', '--config',
               tmp_path / 'a' / 'market.toml', '--out', out).returncode == 0
    assert sum(int(r['procured_wh']) for r in rows(out / 'requests.csv')) > 0


def test_positions_are_checked(tmp_path):
    from mpc_market.common.errors import InputError
    from mpc_market.market.gridcheck import Positions, apply_activations, load_positions
    path = tmp_path / 'p.csv'
    path.write_text('feeder,slot,net_wh\nline-2,4,-300\n')
    assert load_positions(str(path)) == Positions('feeder', {('line-2', 4): -300})
    for text, field in (('feeder,slot,net_wh\nline-2,4,x\n', 'net_wh'), ('participant,slot,net_wh\nh1,-1,3\n', 'slot'),
                        ('participant,slot,net_wh\nh1,1,3\nh1,1,4\n', 'participant')):
        path.write_text(text)
        with pytest.raises(InputError, match=field):
            load_positions(str(path))
    activations = tmp_path / 'a.csv'
    activations.write_text('participant,slot,direction,activated_wh\nh1,4,down,100\nh2,4,up,50\nh3,4,up,0\n')
    adjusted = apply_activations(Positions('feeder', {('line-2', 4): -300}), str(activations),
                                 {'h1': 'line-2', 'h2': 'line-2'})
    assert adjusted.wh == {('line-2', 4): -250}


@needs_grid
@pytest.mark.slow
def test_the_congestion_loop_relieves_a_midday_pv_overload(tmp_path, monkeypatch):
    load_simbench_once(monkeypatch)  # generate and the three checks: one extraction of the grid, not four
    g = tmp_path / 'g'
    cli('generate', '--grid', CODE, '--flex', '--out', g, check=True)
    first = cli('grid', 'check', '--grid', CODE, '--orders', g / 'orders.csv', '--config', g / 'market.toml',
                '--per-feeder', '--out', tmp_path / 'c1', check=True)
    flows = {int(r['slot']): r for r in rows(tmp_path / 'c1' / 'flows.csv')}
    assert max(float(r['trafo_loading_pct']) for r in flows.values()) > 130, first.stdout
    overloaded = [s for s, r in flows.items() if 'trafo-0' in r['violations'].split()]
    assert overloaded and all(36 <= s <= 64 for s in overloaded)    # midday: 09:00-16:00 local
    requests = rows(tmp_path / 'c1' / 'requests.csv')
    assert requests and all(r['direction'] == 'down' and r['buyer'] == 'dso' for r in requests)
    assert {int(r['slot']) for r in requests} == {s for s, r in flows.items() if r['violations']}
    cli('flex', 'clear', '--engine', 'plain', '--requests', tmp_path / 'c1' / 'requests.csv', '--offers',
        g / 'offers.csv', '--feeders', g / 'feeders.csv', '--config', g / 'market.toml', '--out', tmp_path / 'f',
        check=True)
    after = cli('grid', 'check', '--grid', CODE, '--orders', g / 'orders.csv', '--config', g / 'market.toml',
                '--per-feeder', '--activations', tmp_path / 'f' / 'activations.csv', '--out', tmp_path / 'c2',
                check=True)
    assert 'no violation' in after.stdout
    relieved = rows(tmp_path / 'c2' / 'flows.csv')
    assert all(not r['violations'] and float(r['trafo_loading_pct']) <= 100 for r in relieved)
    assert rows(tmp_path / 'c2' / 'requests.csv') == []
    # per participant too: the activations land on the offering households' own buses
    cli('grid', 'check', '--grid', CODE, '--orders', g / 'orders.csv', '--config', g / 'market.toml',
        '--activations', tmp_path / 'f' / 'activations.csv', '--out', tmp_path / 'c3', check=True)
    assert all(float(r['trafo_loading_pct']) <= 100 for r in rows(tmp_path / 'c3' / 'flows.csv'))


def test_bad_grid_options_are_one_line(tmp_path):
    result = cli('grid', 'check', '--grid', 'simbench:nope', '--positions', tmp_path / 'p.csv', '--out', tmp_path)
    assert result.returncode == 2 and result.stderr.count('\n') == 1
