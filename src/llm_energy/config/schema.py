"""The generic half of the configuration schema: a section is a frozen dataclass whose fields
carry their check (`checked(...)`, `checked_by(sibling, table)`); `parse_section` rejects unknown
and missing keys, runs every check, then `validate(key)`. Defaults live in `conf/` only."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, Self, TypeVar

T = TypeVar("T")
Check = Callable[[str, Any], Any]

MAX_FREQ_MHZ = 5000  # no GPU clocks anywhere near this; catches kHz/Hz unit mistakes
COMPOSE_HINT = "every key must be set in conf/; regenerate params.yaml with `llm-energy compose`"


class ConfigError(ValueError):
    """A configuration value is not allowed. The message is one line, for the user."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"params: {key} = {value!r} is not allowed: {allowed}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ "; did you mean X?" for the closest of `choices` (typos such as gpu.frq), else ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def dotted_keys(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every key of a params mapping as `section.key` (nested sections joined by dots)."""
    keys = []
    for k, v in params.items():
        keys.append(f"{prefix}{k}")
        if isinstance(v, Mapping):
            keys += dotted_keys(v, f"{prefix}{k}.")
    return keys


class Missing:
    """The value shown for a key that params.yaml lacks."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING = Missing()


def callable_check(check: Any) -> Check:
    # In a class body an earlier field can shadow a check's name; fail at import, not mid-run.
    if not callable(check):
        raise TypeError(f"a schema check must be callable, got {check!r}")
    return check


def checked(check: Check) -> Any:
    """A dataclass field validated (and converted) by `check(key, value)`."""
    return dataclasses.field(metadata={"check": callable_check(check)})


def checked_by(sibling: str, table: Mapping[str, Check]) -> Any:
    """A field whose check is `table[<parsed value of the earlier field sibling>]`."""
    return dataclasses.field(metadata={"by": sibling, "table": table})


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_section(cls: type[T], key: str, raw: Any) -> T:
    """Validate the mapping `raw` at `key` into `cls`; ConfigError (one line) if anything is off."""
    if not isinstance(raw, Mapping):
        raise ConfigError(key, raw, "expected a mapping (section missing from params.yaml?)")
    for name, where in getattr(cls, "RETIRED", {}).items():
        if name in raw:
            raise ConfigError(f"{key}.{name}", "...", where)
    names = field_names(cls)
    unknown = sorted(str(k) for k in raw if k not in names)
    if unknown:
        allowed = ", ".join(names) if names else "none (write {})"
        hint = did_you_mean(unknown[0], names) or ";"
        why = f"unknown key{hint} allowed keys: {allowed}"
        raise ConfigError(f"{key}.{unknown[0]}", raw[unknown[0]], why)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in raw:
            raise ConfigError(f"{key}.{f.name}", MISSING, COMPOSE_HINT)
        meta = f.metadata  # checked_by: the check its sibling's parsed value picks
        check = meta["table"][values[meta["by"]]] if "by" in meta else meta["check"]
        values[f.name] = check(f"{key}.{f.name}", raw[f.name])
    parsed = cls(**values)
    validate = getattr(parsed, "validate", None)
    if validate is not None:
        validate(key)
    return parsed


class Section:
    """Base of the top-level sections: `Cls.parse(raw)` validates params.yaml's `KEY` section."""

    KEY: ClassVar[str] = ""

    @classmethod
    def parse(cls, raw: Any) -> Self:
        return parse_section(cls, cls.KEY, raw)


def section(cls: type[T]) -> Check:
    """A nested section as a field check."""
    return lambda key, value: parse_section(cls, key, value)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def choice(allowed: Sequence[str]) -> Check:
    def check(key: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(key, value, "expected one of " + "|".join(allowed))
        return str(value)

    return check


def _bounded(
    what: str,
    is_kind: Callable[[Any], bool],
    cast: Callable[[Any], Any],
    minimum: float,
    maximum: float | None,
) -> Check:
    def check(key: str, value: Any) -> Any:
        if not is_kind(value) or value < minimum or (maximum is not None and value > maximum):
            upper = f" and at most {maximum}" if maximum is not None else ""
            raise ConfigError(key, value, f"expected {what} of at least {minimum}{upper}")
        return cast(value)

    return check


def integer(minimum: int, maximum: int | None = None) -> Check:
    return _bounded("an integer", is_int, int, minimum, maximum)


def number(minimum: float, maximum: float | None = None) -> Check:
    return _bounded("a number", is_number, float, minimum, maximum)


def reworded(check: Check, expected: str) -> Check:
    """`check` whose error says `expected` (what the setting means, not only its type)."""

    def wrapped(key: str, value: Any) -> Any:
        try:
            return check(key, value)
        except ConfigError:
            raise ConfigError(key, value, expected) from None

    return wrapped


def open_fraction(key: str, value: Any) -> float:
    if not is_number(value) or not 0 < value < 1:
        raise ConfigError(key, value, "expected a number strictly between 0 and 1")
    return float(value)


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "expected true or false")
    return value


def text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(key, value, "expected a non-empty string")
    return value


def name_like(key: str, value: Any) -> str:
    """A dataset config name, split or revision: text (YAML may read `1.0` as a number)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float) or not str(value):
        raise ConfigError(key, value, "expected a string or null")
    return str(value)


def optional(check: Check) -> Check:
    """`check`, or null (whose meaning each key documents in conf/)."""
    callable_check(check)
    return lambda key, value: None if value is None else check(key, value)


def clock_mhz(key: str, value: Any) -> int:
    if not is_int(value) or not 0 < value <= MAX_FREQ_MHZ:
        raise ConfigError(
            key,
            value,
            f"expected a clock in MHz (integer, 1..{MAX_FREQ_MHZ}) or null for driver defaults",
        )
    return int(value)


def list_of(check: Check, *, what: str) -> Check:
    """A list (possibly empty) whose items pass `check`, as a tuple."""
    callable_check(check)

    def parse(key: str, value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise ConfigError(key, value, f"expected a list of {what} ([] for none)")
        return tuple(check(f"{key}[{i}]", v) for i, v in enumerate(value))

    return parse


def mapping(what: str) -> Check:
    def check(key: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ConfigError(key, value, f"expected a mapping of {what}")
        return dict(value)

    return check
