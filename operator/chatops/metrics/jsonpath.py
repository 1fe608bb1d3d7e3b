"""One number out of a JSON answer, by JSONPath (jsonpath-ng, with its filter
extensions): the pure half of the `web` metric provider.

A JSONPath is written as Argo Rollouts and kubectl write it, `{$.data.ok}`, or bare,
`$.data.ok` (`.data.ok` too). What it matches is judged as a Prometheus result is:
nothing (or `null`) is no data, one number is the value, anything else cannot gate a
release and says why.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext.parser import parse


@functools.lru_cache(maxsize=256)
def compile_path(text: str) -> JSONPath:
    """The parsed JSONPath; a ValueError saying what is wrong with it otherwise."""
    bare = text.strip()
    if bare.startswith("{") and bare.endswith("}"):
        bare = bare[1:-1].strip()
    if bare.startswith("."):
        bare = "$" + bare
    try:
        return parse(bare)
    except (JSONPathError, TypeError, ValueError, AttributeError) as err:
        raise ValueError(f"not a JSONPath: {err}") from None


def number(document: Any, path: str) -> float | None:
    """The number `path` matches in `document`: a JSON number, a string holding one
    (`"0.5"`, `"NaN"`), or a boolean (`true` is 1, `false` 0, so `min: 1` asks for
    `true`); None when it matches nothing or `null`. Raises ValueError when it matches
    several values or one that is not a number."""
    try:
        found = [match.value for match in compile_path(path).find(document)]
    except (TypeError, KeyError, IndexError, AttributeError) as err:  # a filter on odd data
        raise ValueError(f"cannot be evaluated on the answer: {type(err).__name__}") from None
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"matched {len(found)} values; it must match one")
    value = found[0]
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise ValueError("matched a number too large for a float") from None
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise ValueError(f"matched {_described(value)}, not a number")


def _described(value: Any) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"the string {shown!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return f"an array of {len(value)}"
    return type(value).__name__

