"""Typed key=value options for methods, datasets and architectures, with one clear error per bad value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from paibench.errors import PaibenchError, bad_value

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class _Required:
    def __repr__(self) -> str:
        return "<required>"


REQUIRED = _Required()  # default of an option that must be given


def _a(type_name: str) -> str:
    return {"int": "an integer", "float": "a number", "bool": "a boolean (true/false)", "list": "a list",
            "str": "a string"}.get(type_name, f"a {type_name}")


@dataclass(frozen=True)
class Option:
    type: type
    default: Any = None
    choices: Sequence[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    # Options added after masks were first published: left out of a mask's seed and metadata while at
    # their default, so every mask made before the option existed stays byte-identical.
    omit_default: bool = False
    forbidden: Sequence[Any] = ()  # values refused inside [minimum, maximum] (e.g. 0 for num_batches)
    # False for options that change no number (logging, keeping files): they seed nothing and changing
    # them marks no cached result stale.
    affects_results: bool = True

    def parse(self, field: str, raw: Any) -> Any:
        value = raw
        try:
            if self.type is bool:
                if isinstance(raw, bool):
                    value = raw
                elif str(raw).lower() in _TRUE:
                    value = True
                elif str(raw).lower() in _FALSE:
                    value = False
                else:
                    raise ValueError
            elif self.type is int:
                if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                    raise ValueError
                value = int(float(raw)) if isinstance(raw, str) and "e" in raw.lower() else int(raw)
            elif self.type is float:
                if isinstance(raw, bool):
                    raise ValueError
                value = float(raw)
                if not math.isfinite(value):  # NaN passes every range check (comparisons are false)
                    raise bad_value(field, raw, "a finite number")
            elif self.type is list:
                if not isinstance(raw, (list, tuple)):  # list("abc") would silently split a string
                    raise ValueError
                value = list(raw)
            else:
                value = self.type(raw)
        except (TypeError, ValueError):
            raise bad_value(field, raw, _a(self.type.__name__)) from None
        if self.choices is not None and value not in self.choices:
            raise bad_value(field, raw, list(self.choices))
        if self.minimum is not None and value < self.minimum:
            raise bad_value(field, raw, f"{_a(self.type.__name__)} >= {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise bad_value(field, raw, f"{_a(self.type.__name__)} <= {self.maximum}")
        if value in self.forbidden:
            raise bad_value(field, raw, f"{_a(self.type.__name__)} other than {', '.join(map(str, self.forbidden))}")
        return value


def parse_options(spec: Mapping[str, Option], raw: Mapping[str, Any], field: str) -> dict[str, Any]:
    """Validate `raw` against `spec`, fill defaults; unknown keys are an error naming the allowed keys."""
    unknown = sorted(set(raw) - set(spec))
    if unknown:
        allowed = f"one of the option keys {', '.join(sorted(spec))}" if spec else "no options (this entry takes none)"
        raise bad_value(f"{field}.{unknown[0]}", raw[unknown[0]], allowed)
    out = {}
    for key, opt in spec.items():
        if key in raw:
            out[key] = opt.parse(f"{field}.{key}", raw[key])
        elif opt.default is REQUIRED:
            allowed = f"one of {', '.join(map(str, opt.choices))}" if opt.choices else _a(opt.type.__name__)
            raise PaibenchError(f"{field}.{key}: missing; this option is required ({allowed})")
        else:
            out[key] = opt.default
    return out


def recorded_options(spec: Mapping[str, Option], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` without the ``omit_default`` options that are at their default (what seeds and metadata record)."""
    return {k: v for k, v in values.items()
            if not (k in spec and spec[k].omit_default and v == spec[k].default)}


def parse_kv_list(items: Sequence[str] | None, field: str) -> dict[str, str]:
    """Turn CLI `key=value` strings into a dict."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PaibenchError(f"{field}: {item!r} is not allowed; expected key=value")
        out[key.strip()] = value.strip()
    return out
