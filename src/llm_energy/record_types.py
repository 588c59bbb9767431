"""The building blocks of the record schema (`llm_energy.records`): a column (name, kind,
nullability, unit from the name's suffix) and a schema (the columns of one file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["str", "int", "float", "bool", "list"]
#: when a column must be present: on every record, on records with status ok, or never
Required = Literal["always", "ok", "no"]

#: unit suffix → unit (house rule: units are in names)
UNIT_SUFFIXES: dict[str, str] = {
    "_mhz": "MHz",
    "_j": "J",
    "_w": "W",
    "_s": "s",
    "_c": "°C",
    "_m": "million",
    "_j_s": "J·s",
    "_j_s2": "J·s²",
    "_pct": "%",
}


def unit_of(name: str) -> str:
    """The unit a column name carries ("" for counts, flags and text)."""
    for suffix in sorted(UNIT_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return UNIT_SUFFIXES[suffix]
    return ""


@dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    nullable: bool = True
    required: Required = "always"

    @property
    def unit(self) -> str:
        return unit_of(self.name)

    @property
    def dtype(self) -> str:
        """pandas dtype of the typed column (nullable ints and flags keep their type; a column
        only measured records carry is null on failed ones)."""
        null = self.nullable or self.required != "always"
        if self.kind == "float":
            return "float64"
        if self.kind == "int":
            return "Int64" if null else "int64"
        if self.kind == "bool":
            return "boolean" if null else "bool"
        return "object"


@dataclass(frozen=True)
class Schema:
    """The columns of one file; ``extra``: (regex, kind) of the undeclared columns allowed."""

    name: str
    columns: tuple[Column, ...]
    extra: tuple[tuple[str, Kind], ...] = ()

    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


# What kind of energy each source gives; records carry it as `energy_kind`, and kinds are never
# mixed in one number.
ENERGY_KIND_BY_SOURCE: dict[str, str] = {
    "nvml": "measured",
    "rapl": "measured",
    "codecarbon-estimate": "estimated",
    "codecarbon": "estimated",
    "simulated": "simulated",
}


def energy_kind(energy_source: str) -> str:
    try:
        return ENERGY_KIND_BY_SOURCE[energy_source]
    except KeyError:
        raise ValueError(
            f"unknown energy_source {energy_source!r}; expected one of {sorted(ENERGY_KIND_BY_SOURCE)}"
        ) from None
