"""Read the records and tables stages pass each other, checked and typed by the record schema
(llm_energy/records.py): a bad column is one InputFileError naming file, column and remedy."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from llm_energy.io.files import read_csv, read_jsonl
from llm_energy.record_types import Schema
from llm_energy.records import typed_frame


def load_records(path: Path, schema: Schema, *, remedy: str) -> pd.DataFrame:
    """A JSONL record file as a frame typed by ``schema``."""
    return typed_frame(pd.DataFrame(read_jsonl(path, remedy=remedy)), schema, path, remedy)


def load_table(
    path: Path, schema: Schema, *, remedy: str, allow_empty: bool = False
) -> pd.DataFrame:
    """A stage's CSV table typed by ``schema`` (an empty file only with ``allow_empty``)."""
    frame = read_csv(path, remedy=remedy, allow_empty=allow_empty)
    return typed_frame(frame, schema, path, remedy, csv=True)
