"""Round a table of money to the cent so that it still adds up: every row, every column and the total.

A page that shows hours (rows) split into energy, standing charge and taxes (columns) rounds each
figure to the cent. Rounding each one on its own, the rows no longer add up to the total shown,
nor the parts of a row to its total. This is "controlled rounding" (L. H. Cox, 1987): every cell,
row total and column total becomes its exact value rounded down or up to the cent, and the grand
total the exact total rounded half up (what every other figure of the household shows), so that
every row and every column of what is shown adds up exactly. A table of two dimensions always has
such a rounding: the rounding-up choices are an integral flow (rows -> cells -> columns) with the
totals' floors and ceilings as its bounds, and the exact table is a fractional flow inside them.

Framework-free; exact Decimal arithmetic, no float.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
_HUNDRED = Decimal(100)


@dataclass(frozen=True)
class RoundedTable:
    cells: list[list[Decimal]]  # to the cent, rows x columns
    rows: list[Decimal]  # each row's cells added up
    columns: list[Decimal]  # each column's cells added up
    total: Decimal  # the exact total rounded half up; the rows, and the columns, add up to it


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_FLOOR))


def _ceil(value: Decimal) -> int:
    return int(value.to_integral_value(ROUND_CEILING))


def to_cents(table: Sequence[Sequence[Decimal]]) -> RoundedTable:
    """``table`` (rows of exact EUR amounts, all rows as long) rounded to the cent so that it adds up."""
    width = len(table[0]) if table else 0
    cents = [[Decimal(value) * _HUNDRED for value in row] for row in table]
    floors = [[_floor(value) for value in row] for row in cents]
    total = sum((value for row in table for value in row), Decimal(0))
    grand = int((total * _HUNDRED).to_integral_value(ROUND_HALF_UP))
    ups = _by_swaps(cents, floors, width) or _round_up_choices(cents, floors, width, grand - sum(map(sum, floors)))
    cells = [[Decimal(floors[i][j] + ups[i][j]) / _HUNDRED for j in range(width)] for i in range(len(cents))]
    rows = [sum(row, Decimal(0)) for row in cells]
    columns = [sum((row[j] for row in cells), Decimal(0)) for j in range(width)]
    return RoundedTable(
        cells=[[cell.quantize(CENT) for cell in row] for row in cells],
        rows=[row.quantize(CENT) for row in rows],
        columns=[column.quantize(CENT) for column in columns],
        total=(Decimal(grand) / _HUNDRED).quantize(CENT),
    )


def _by_swaps(cents: list[list[Decimal]], floors: list[list[int]], width: int) -> list[list[int]] | None:
    """The usual quick way, or None: rows rounded by running totals, then columns mended by swaps.

    Rounding the running total cell after cell (row after row) rounds every cell, every row and
    the grand total as required; only the columns may be out. Moving a rounding-up from one cell
    of a row to another keeps the row's total: done along the shortest chain of columns from one
    with too many to one with too few, it mends them one at a time. None when no chain exists
    (a row's total would have to change): the flow below then decides.
    """
    n = len(cents)
    ups = [[0] * width for _ in range(n)]
    running, shown = Decimal(0), 0
    for i in range(n):
        for j in range(width):
            running += cents[i][j]
            rounded = int(running.to_integral_value(ROUND_HALF_UP))
            ups[i][j] = rounded - shown - floors[i][j]
            shown = rounded
    fractional = [[cents[i][j] != floors[i][j] for j in range(width)] for i in range(n)]
    bounds = []
    for j in range(width):
        column_fraction = sum((cents[i][j] - floors[i][j] for i in range(n)), Decimal(0))
        bounds.append((_floor(column_fraction), _ceil(column_fraction)))
    counts = [sum(ups[i][j] for i in range(n)) for j in range(width)]
    for _ in range(n * width + 1):
        over = [j for j in range(width) if counts[j] > bounds[j][1]]
        under = [j for j in range(width) if counts[j] < bounds[j][0]]
        if not over and not under:
            return ups
        # From a column with too many (or any that may give one) to one with too few (or any that may take one).
        sources = over or [j for j in range(width) if counts[j] > bounds[j][0]]
        targets = set(under or [j for j in range(width) if counts[j] < bounds[j][1]])
        chain = _chain(ups, fractional, sources, targets, width)
        if chain is None:
            return None
        for i, j, k in chain:
            ups[i][j], ups[i][k] = 0, 1
        counts[chain[0][1]] -= 1
        counts[chain[-1][2]] += 1
    return None


def _chain(
    ups: list[list[int]], fractional: list[list[bool]], sources: list[int], targets: set[int], width: int
) -> list[tuple[int, int, int]] | None:
    """The shortest chain of moves (row, from column, to column) from a source column to a target column."""
    came: dict[int, tuple[int, int, int] | None] = dict.fromkeys(sources)
    queue = list(sources)
    for column in queue:
        if column in targets and came[column] is not None:
            chain = []
            while came[column] is not None:
                step = came[column]
                chain.append(step)
                column = step[1]
            return chain[::-1]
        for i, row in enumerate(ups):
            if not row[column]:
                continue
            for k in range(width):
                if k not in came and fractional[i][k] and not row[k]:
                    came[k] = (i, column, k)
                    queue.append(k)
    return None


def _round_up_choices(cents: list[list[Decimal]], floors: list[list[int]], width: int, ups: int) -> list[list[int]]:
    """Which cells round up (1) rather than down (0), ``ups`` of them: a feasible circulation.

    Nodes: s, t, one per row, one per column. Edges with [lower, upper] bounds: s -> row [floor,
    ceil of the row's fractions], row -> column [0, 1] for a cell with a fraction, column -> t
    [floor, ceil of the column's fractions], t -> s [ups, ups]. Lower bounds are moved to a super
    source and sink as usual; a maximum flow that saturates them is the rounding.
    """
    n = len(cents)
    fractions = [[cents[i][j] - floors[i][j] for j in range(width)] for i in range(n)]
    s, t, first_col = 0, 1, 2 + n
    source, sink = first_col + width, first_col + width + 1
    graph: list[list[list[int]]] = [[] for _ in range(sink + 1)]  # edge: [to, capacity, index of reverse]
    excess = [0] * (sink + 1)
    cell_edges: dict[tuple[int, int], list[int]] = {}

    def add(u: int, v: int, low: int, high: int) -> list[int]:
        edge = [v, high - low, len(graph[v])]
        graph[u].append(edge)
        graph[v].append([u, 0, len(graph[u]) - 1])
        excess[v] += low
        excess[u] -= low
        return edge

    for i in range(n):
        row_fraction = sum(fractions[i], Decimal(0))
        add(s, 2 + i, _floor(row_fraction), _ceil(row_fraction))
        for j in range(width):
            if fractions[i][j]:
                cell_edges[i, j] = add(2 + i, first_col + j, 0, 1)
    for j in range(width):
        column_fraction = sum((fractions[i][j] for i in range(n)), Decimal(0))
        add(first_col + j, t, _floor(column_fraction), _ceil(column_fraction))
    add(t, s, ups, ups)
    needed = 0
    for node in range(source):
        if excess[node] > 0:
            add(source, node, 0, excess[node])
            needed += excess[node]
        elif excess[node] < 0:
            add(node, sink, 0, -excess[node])
    if _max_flow(graph, source, sink) != needed:  # cannot happen for a table of two dimensions
        raise ArithmeticError("no controlled rounding found")
    choices = [[0] * width for _ in range(n)]
    for (i, j), edge in cell_edges.items():
        choices[i][j] = 1 - edge[1]  # capacity 1 used up: rounded up
    return choices


def _max_flow(graph: list[list[list[int]]], source: int, sink: int) -> int:
    """Dinic's algorithm: breadth-first levels, then as many depth-first paths along them as fit."""
    flow = 0
    while True:
        level = [-1] * len(graph)
        level[source] = 0
        queue = [source]
        for node in queue:
            for to, capacity, _ in graph[node]:
                if capacity > 0 and level[to] < 0:
                    level[to] = level[node] + 1
                    queue.append(to)
        if level[sink] < 0:
            return flow
        next_edge = [0] * len(graph)
        while pushed := _push(graph, level, next_edge, source, sink, 1 << 60):
            flow += pushed


def _push(
    graph: list[list[list[int]]], level: list[int], next_edge: list[int], node: int, sink: int, limit: int
) -> int:
    if node == sink:
        return limit
    edges = graph[node]
    while next_edge[node] < len(edges):
        edge = edges[next_edge[node]]
        to, capacity, reverse = edge
        if capacity > 0 and level[to] == level[node] + 1:
            pushed = _push(graph, level, next_edge, to, sink, min(limit, capacity))
            if pushed:
                edge[1] -= pushed
                graph[to][reverse][1] += pushed
                return pushed
        next_edge[node] += 1
    return 0
