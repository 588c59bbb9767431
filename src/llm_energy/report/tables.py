"""GitHub pipe tables through pandas' ``DataFrame.to_markdown`` (tabulate); pure.

The one table renderer of the project: the stats stage's ``*.md``, ``llm-energy compare`` and
the report (which passes its own number formatting) all go through :func:`pipe_table`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pandas as pd


def plain_cell(value: Any) -> str:
    """Blank for a missing value, 4 significant digits for a float, ``str`` otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _escape(text: str) -> str:
    # a bare "|" would end the cell, a newline the row
    return text.replace("|", "\\|").replace("\n", " ")


def pipe_table(frame: pd.DataFrame, cell: Callable[[Any], str] = plain_cell) -> str:
    """``frame`` (no index) as a pipe table, each cell formatted by ``cell``; ``""`` when empty."""
    if frame.empty or len(frame.columns) == 0:
        return ""
    text = frame.map(lambda v: _escape(cell(v)))
    text.columns = [_escape(str(c)) for c in frame.columns]
    # the cells are final strings: tabulate must not re-parse "1e-05" or "007" as numbers
    return text.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def to_markdown(df: pd.DataFrame, *, max_rows: int = 200) -> str:
    """At most ``max_rows`` rows as a pipe table (a note counts the rest); a marker when empty."""
    if df.empty:
        return "_(no rows)_"
    table = pipe_table(df.head(max_rows))
    if len(df) > max_rows:
        table += f"\n\n_({len(df) - max_rows} more rows in the CSV)_"
    return table
