"""generate --grid simbench:CODE: a community on a simbench LV grid (the optional extra [grid]).

The mapping (a participant per load, the PV at its bus, feeders along the lines leaving the
transformer, the transformer as zone) is checked against the net with pandapower's own topology;
the written community clears, plain and zoned; and the DSO statistics' feeder totals of its
readings are the grid's own load and PV sums of the day.
"""

import copy
import datetime
import importlib.util
import os
import sys
from fractions import Fraction

import pytest

from mpc_market.market.grid import CODE_RE, day_energy, day_rows, map_grid
from tests.test_docs import run_script, shell_blocks

from helpers import cli, load_simbench_once, read_rows

# found, not imported: importing simbench and pandapower costs seconds of every collection
HAVE_GRID = all(importlib.util.find_spec(name) is not None for name in ('simbench', 'pandapower'))

needs_grid = pytest.mark.skipif(not HAVE_GRID and not os.environ.get('MPC_MARKET_REQUIRE_GRID'),
                                reason="the grid extra is not installed (pip install -e '.[grid]')")

CODE = '1-LV-rural1--0-sw'      # 13 loads, 4 PV, 4 feeders under one 0.16 MVA transformer
DAY = datetime.date(2016, 6, 21)


@pytest.fixture(scope='module')
def rural():
    """(net, GridMap) of CODE, loaded once (simbench takes a few seconds)."""
    from mpc_market.market.grid import grid_net
    with pytest.MonkeyPatch.context() as patch:
        load_simbench_once(patch)  # the extraction the generate commands below reuse
        return grid_net(CODE)


def feeder_by_topology(net):
    """{bus: the line leaving the transformer's LV bus that it hangs under}, by pandapower's graph."""
    import networkx as nx
    import pandapower.topology as top
    graph = top.create_nxgraph(net, respect_switches=True, include_trafos=False)
    lv = int(net.trafo.lv_bus.iloc[0])
    lines = {}
    for bus in graph.nodes:
        if bus != lv and nx.has_path(graph, lv, bus):
            first = nx.shortest_path(graph, lv, bus)[1]
            (key,) = graph[lv][first]       # a radial grid: one line from the busbar to each feeder's first bus
            assert key[0] == 'line'
            lines[int(bus)] = int(key[1])
    return lines


def wh(mw):
    return round(Fraction(float(mw)) * 250_000)


def grid_sums(net, day):
    """{line: [load Wh - PV Wh per slot]} of every feeder, from simbench's own absolute profiles."""
    import simbench as sb
    values = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    times = net.profiles['load']['time']
    rows = [i for i, t in enumerate(times) if t.startswith(f'{day:%d.%m.%Y}')]
    feeder = feeder_by_topology(net)
    sums = {}
    for element, sign in (('load', 1), ('sgen', -1)):
        table = values[(element, 'p_mw')]
        for index, bus in getattr(net, element).bus.items():
            total = sums.setdefault(feeder[int(bus)], [0] * len(rows))
            for j, row in enumerate(rows):
                total[j] += sign * wh(table[index].iloc[row])
    return sums


@needs_grid
def test_the_codes_accepted_are_simbench_s_own_lv_grids():
    import simbench as sb
    lv = {c for c in sb.collect_all_simbench_codes() if c.startswith('1-LV-')}
    assert len(lv) == 36 and all(CODE_RE.fullmatch(c) for c in lv)
    assert all(c in lv for c in sb.collect_all_simbench_codes() if CODE_RE.fullmatch(c))


@needs_grid
@pytest.mark.slow
def test_every_load_is_one_participant_with_the_pv_at_its_bus(rural):
    net, grid = rural
    assert sorted(load for p in grid.participants for load in p.loads) == sorted(net.load.index) and \
        len(grid.participants) == len(net.load) == 13
    for p in grid.participants:
        (load,) = p.loads
        bus = int(net.load.bus[load])
        at_bus = sorted(net.load.index[net.load.bus == bus])
        assert p.bus == bus and p.name == f'h-{bus}-{at_bus.index(load)}'
        assert sorted(p.sgens) == sorted(net.sgen.index[net.sgen.bus == bus])
    assert sorted(s for p in grid.participants for s in p.sgens) == sorted(net.sgen.index)
    assert sum(1 for p in grid.participants if p.sgens) == 4


@needs_grid
@pytest.mark.slow
def test_feeders_follow_the_lines_and_the_transformer_is_the_zone(rural):
    net, grid = rural
    lv = int(net.trafo.lv_bus.iloc[0])
    leaving = sorted(int(i) for i, line in net.line.iterrows() if lv in (line.from_bus, line.to_bus))
    assert sorted(line for _, line in grid.feeder_lines) == leaving and len(leaving) == 4
    assert grid.zone_trafos == (('trafo-0', 0),)
    by_line = feeder_by_topology(net)
    feeders = grid.feeders()
    assert set(feeders) == {p.name for p in grid.participants}
    for p in grid.participants:
        assert feeders[p.name] == (f'line-{by_line[p.bus]}', 'trafo-0')
    sizes = sorted(sum(1 for f, _ in feeders.values() if f == name) for name, _ in grid.feeder_lines)
    assert sizes == [1, 3, 4, 5]


@needs_grid
@pytest.mark.slow
def test_busbar_pv_only_meshed_and_cut_off_grids(rural):
    from mpc_market.common.errors import InputError
    net, _ = rural
    lv = int(net.trafo.lv_bus.iloc[0])
    changed = copy.deepcopy(net)
    changed.load.loc[0, 'bus'] = lv                 # a load on the busbar itself
    changed.sgen.loc[0, 'bus'] = lv                 # and PV there, on the first participant of the bus
    changed.sgen.loc[1, 'bus'] = 42                 # the MV bus: under no transformer's LV side
    with pytest.raises(InputError, match='bus 42 has a load or generator but is under no transformer'):
        map_grid(CODE, changed)
    changed.sgen.loc[1, 'bus'] = lv
    on_busbar = [p for p in map_grid(CODE, changed).participants if p.bus == lv]
    assert [(p.name, p.loads, p.sgens, p.feeder) for p in on_busbar] == [(f'h-{lv}-0', (0,), (0, 1), f'busbar-{lv}')]
    alone = copy.deepcopy(net)
    alone.sgen.loc[2, 'bus'] = lv                   # PV on a bus without a load: a participant of its own
    (pv,) = [p for p in map_grid(CODE, alone).participants if not p.loads]
    assert (pv.name, pv.sgens, pv.feeder, pv.zone) == (f'pv-{lv}-0', (2,), f'busbar-{lv}', 'trafo-0')
    participants = map_grid(CODE, net).participants
    first, second = (next(p for p in participants if p.feeder == f) for f in ('line-2', 'line-6'))
    meshed = copy.deepcopy(net)
    meshed.line.loc[99] = meshed.line.loc[0]         # a line joining two feeders
    meshed.line.loc[99, ['from_bus', 'to_bus']] = [first.bus, second.bus]
    with pytest.raises(InputError, match='a meshed grid: feeder line-.* joins line-'):
        map_grid(CODE, meshed)
    cut = copy.deepcopy(net)
    cut.line.loc[6, 'in_service'] = False           # line 6 leaves the busbar: its feeder hangs under nothing
    with pytest.raises(InputError, match='under no transformer'):
        map_grid(CODE, cut)


@needs_grid
@pytest.mark.slow
def test_a_day_is_simbench_s_profiles_in_exact_wh_on_its_local_clock(rural):
    import simbench as sb
    net, grid = rural
    energy = day_energy(net, grid, DAY)
    values = sb.get_absolute_values(net, profiles_instead_of_study_cases=True)
    start, first, slots = day_rows(DAY)
    assert (start.isoformat(), slots) == ('2016-06-21T00:00:00+02:00', 96)
    assert net.profiles['load']['time'].iloc[first] == '21.06.2016 00:00'
    p = next(p for p in grid.participants if p.sgens)
    assert list(energy.load_wh[p.name]) == [wh(values[('load', 'p_mw')][p.loads[0]].iloc[first + s]) for s in range(96)]
    assert list(energy.pv_wh[p.name]) == [wh(values[('sgen', 'p_mw')][p.sgens[0]].iloc[first + s]) for s in range(96)]
    assert max(energy.pv_wh[p.name]) > 1000 and min(energy.pv_wh[p.name]) == 0   # midsummer sun, dark night
    assert [day_rows(datetime.date(2016, 3, 27))[2], day_rows(datetime.date(2016, 10, 30))[2]] == [92, 100]
    autumn = day_energy(net, grid, datetime.date(2016, 10, 30))
    assert {len(v) for v in autumn.load_wh.values()} == {100}


@needs_grid
@pytest.mark.slow
def test_the_written_community_clears_and_its_feeder_statistics_are_the_grid_s_sums(rural, tmp_path, monkeypatch):
    from mpc_market.stats.meterdata import load_day_readings, load_feeders
    from mpc_market.stats.packing import Layout
    from mpc_market.stats.reference import plain_totals
    load_simbench_once(monkeypatch)  # three generate commands: copies of the fixture's extraction
    net, grid = rural
    out = cli('generate', '--grid', f'simbench:{CODE}', '--day', str(DAY), '--out', tmp_path / 'g', check=True).stdout
    assert f'of 13 participants of simbench:{CODE} (4 feeders under 1 transformer) for {DAY}' in out
    g = tmp_path / 'g'
    assert 'start = 2016-06-21T00:00:00+02:00' in (g / 'market.toml').read_text()
    assert read_rows(g / 'feeders.csv') == [{'participant': n, 'feeder': f, 'zone': z}
                                            for n, (f, z) in grid.feeders().items()]
    readings = read_rows(g / 'readings.csv')
    assert len(readings) == 13 * 96 and {r['participant'] for r in read_rows(g / 'orders.csv')} <= set(grid.feeders())
    cli('clear', '--orders', g / 'orders.csv', '--config', g / 'market.toml', '--engine', 'plain', '--quiet',
        '--out', tmp_path / 'plain', check=True)
    public = read_rows(tmp_path / 'plain' / 'public.csv')
    assert len(public) == 96 and sum(int(r['traded_wh']) for r in public) > 0   # PV sellers meet buyers

    layout = Layout(slots=96, max_reading_wh=65535, max_meters=10 ** 6, guard_bits=4, modulus_bits=2048)
    days, _ = load_day_readings(str(g / 'readings.csv'), layout)
    totals = plain_totals(days, load_feeders(str(g / 'feeders.csv')), 1, 'feeder', layout)
    sums = grid_sums(net, DAY)
    assert {t.name: t.net for t in totals} == {f'line-{line}': s for line, s in sums.items()}
    assert {t.name: t.meters for t in totals} == {'line-9': 1, 'line-10': 3, 'line-6': 4, 'line-2': 5}
    assert any(v < 0 for s in sums.values() for v in s)   # a feeder exports at noon

    cli('generate', '--grid', f'simbench:{CODE}', '--day', str(DAY), '--zones', '1', '--out', tmp_path / 'z',
        check=True)
    z = tmp_path / 'z'
    assert 'zones = true' in (z / 'market.toml').read_text() and \
        {r['zone'] for r in read_rows(z / 'orders.csv')} == {'trafo-0'}
    assert (z / 'readings.csv').read_text() == (g / 'readings.csv').read_text()
    zoned = cli('clear', '--orders', z / 'orders.csv', '--config', z / 'market.toml', '--engine', 'plain', '--quiet',
                '--out', tmp_path / 'zoned', check=True).stdout
    assert 'within zones' in zoned
    again = cli('generate', '--grid', f'simbench:{CODE}', '--day', str(DAY), '--out', tmp_path / 'again', check=True)
    assert again.returncode == 0 and (tmp_path / 'again' / 'orders.csv').read_text() == (g / 'orders.csv').read_text()


@pytest.mark.parametrize('args, message', [
    (['--grid', 'simbench:1-LV-rural9--0-sw'], "--grid: 'simbench:1-LV-rural9--0-sw' is not simbench:CODE"),
    (['--grid', '/etc/passwd'], "--grid: '/etc/passwd' is not simbench:CODE"),
    (['--grid', 'simbench:../1-LV-rural1--0-sw'], '--grid: '),
    (['--grid', f'simbench:{CODE}', '--day', '2017-01-01'], "--day: 2017-01-01 is outside simbench's profiles"),
    (['--grid', f'simbench:{CODE}', '--day', '2016-02-30'], "--day: '2016-02-30' is not a day (YYYY-MM-DD)"),
    (['--grid', f'simbench:{CODE}', '--participants', '3'], '--participants: the grid gives the participants'),
    (['--grid', f'simbench:{CODE}', '--slots', '4'], '--slots: the grid gives'),
    ([], '--participants: how many households? (or --grid simbench:CODE)'),
])
def test_bad_grids_and_days_are_one_line_errors(tmp_path, args, message):
    bad = cli('generate', *args, '--out', tmp_path / 'out')
    assert bad.returncode == 2 and bad.stderr.startswith(f'error: {message}') and bad.stderr.count('\n') == 1
    assert not (tmp_path / 'out').exists()


def test_without_the_extra_the_grid_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'simbench', None)    # as if the extra were not installed
    missing = cli('generate', '--grid', f'simbench:{CODE}', '--out', tmp_path / 'out')
    assert missing.returncode == 2 and missing.stderr == \
        "error: --grid: needs the optional extra: pip install -e '.[grid]' (simbench, pandapower)\n"
    assert not (tmp_path / 'out').exists()


@needs_grid
@pytest.mark.slow
def test_zones_other_than_the_transformers_are_refused(tmp_path, monkeypatch):
    load_simbench_once(monkeypatch)
    bad = cli('generate', '--grid', f'simbench:{CODE}', '--zones', '2', '--out', tmp_path / 'out')
    assert bad.returncode == 2 and bad.stderr == (f"error: --zones: simbench:{CODE}'s zones are its 1 transformer(s): "
                                                  '--zones 1, or 0 for one market\n')
    assert not (tmp_path / 'out').exists()


@needs_grid
@pytest.mark.slow
def test_the_docs_simbench_section_runs(tmp_path):
    (block,) = [b for b in shell_blocks('docs/grid-statistics.md') if '--grid simbench:' in b]
    run_script(block, tmp_path)
    assert len(read_rows(tmp_path / 'rural-market' / 'public.csv')) == 96
    assert {r['slot'] for r in read_rows(tmp_path / 'rural-zoned-market' / 'public.csv')} == {str(s) for s in range(96)}
