"""A mapping of a pipeline file with typed getters that name the key path in errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medrecon.errors import PipelineError

__all__ = ["Section"]


class Section:
    """One mapping of the file: typed getters that name the key path in errors,
    and a check that every key was used."""

    def __init__(self, data: Any, where: str, origin: str) -> None:
        if not isinstance(data, Mapping):
            raise PipelineError(f"{origin}: '{where}' must be a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.where = where
        self.origin = origin
        self._used: set[str] = set()

    def error(self, key: str, message: str) -> PipelineError:
        path = f"{self.where}.{key}" if self.where else key
        return PipelineError(f"{self.origin}: '{path}': {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None, *, required: bool = False) -> Any:
        self._used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.error(key, "is required")
            return default
        return self.data[key]

    def section(self, key: str, *, required: bool = False) -> Section | None:
        value = self.get(key, required=required)
        if value is None:
            return None
        return Section(value, f"{self.where}.{key}" if self.where else key, self.origin)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self.get(key, default, required=required)
        if value is not None and not isinstance(value, str | int | float):
            raise self.error(key, f"must be a string, got {value!r}")
        return None if value is None else str(value)  # type: ignore[return-value]

    def number(self, key: str, default: float | None = None, *, lo=None, hi=None) -> float:
        value = self.get(key, default)
        if value is None:
            raise self.error(key, "is required")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"must be a number, got {value!r}")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise self.error(key, f"must be in [{lo}, {hi}], got {value}")
        return float(value)

    def integer(self, key: str, default: int, *, lo: int = 0) -> int:
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise self.error(key, f"must be an integer >= {lo}, got {value!r}")
        return int(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def triple(self, key: str, default: Any = None, *, kind=float, required=False) -> Any:
        value = self.get(key, default, required=required)
        if value is None:
            return None
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value] * 3
        ok = isinstance(value, list | tuple) and len(value) == 3
        if ok:
            ok = all(
                isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value
            )
            ok = ok and (kind is float or all(float(v).is_integer() for v in value))
        if not ok:
            raise self.error(key, f"must be 3 positive {kind.__name__}s, got {value!r}")
        return tuple(kind(v) for v in value)

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self._used, key=str)
        if unknown:
            known = ", ".join(sorted(self._used))
            raise PipelineError(
                f"{self.origin}: unknown key(s) {', '.join(map(repr, unknown))} in "
                f"'{self.where or 'top level'}' (known keys: {known}). Check the spelling."
            )
