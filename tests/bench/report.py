"""Benchmark results: one row per figure measured against its ceiling, printed as a table and saved as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Row:
    """A figure, the ceiling it was measured beside in the same run, and the goal for their ratio."""

    name: str
    figure: float
    unit: str
    ceiling_name: str
    ceiling: float
    ceiling_unit: str
    goal: float  # the least acceptable figure / ceiling
    min_figure: float | None = None  # the least acceptable figure itself, where the goal is absolute

    @property
    def ratio(self) -> float:
        return self.figure / self.ceiling if self.ceiling else 0.0

    @property
    def met(self) -> bool:
        return self.ratio >= self.goal and (self.min_figure is None or self.figure >= self.min_figure)

    @property
    def goal_text(self) -> str:
        goals = [f">= {self.goal:.0%}"] if self.goal or self.min_figure is None else []
        if self.min_figure is not None:
            goals.append(f">= {self.min_figure:,.0f} {self.unit}")
        return " and ".join(goals)

    def as_json(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 4), "met": self.met}


def print_table(rows: list[Row], machine: dict, notes: list[str]) -> None:
    header = ("figure", "value", "ceiling (same run)", "ratio", "goal", "")
    lines = [
        (
            row.name,
            f"{row.figure:,.0f} {row.unit}",
            f"{row.ceiling:,.0f} {row.ceiling_unit} ({row.ceiling_name})",
            f"{row.ratio:.1%}",
            row.goal_text,
            "met" if row.met else "MISSED",
        )
        for row in rows
    ]
    widths = [max(len(line[column]) for line in [header, *lines]) for column in range(len(header))]

    def show(cells: tuple[str, ...]) -> str:
        return "  ".join(
            cell.rjust(width) if 0 < column < 5 else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    print()
    print(show(header))
    print(show(tuple("-" * width for width in widths)))
    for line in lines:
        print(show(line))
    if notes:
        print()
    for note in notes:
        print(note)
    print()
    print(
        f"Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}; "
        f"PostgreSQL {machine['postgresql']}; Django {machine['django']}; gunicorn {machine['gunicorn']}"
    )


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
