"""The ``labels`` section of a pipeline file: values, names, colours, codes and the
volume range each structure is expected to have (``expected_ml``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from medrecon.errors import PipelineError
from medrecon.labels import Code, Label
from medrecon.pipeline.section import Section

__all__ = ["parse_body_parts", "parse_code", "parse_labels"]


def _expected_ml(sec: Section) -> tuple[float, float] | None:
    value = sec.get("expected_ml")
    if value is None:
        return None
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and 0 <= value[0] < value[1]
    )
    if not ok:
        raise sec.error(
            "expected_ml", f"must be [min, max] in mL with 0 <= min < max, got {value!r}"
        )
    return (float(value[0]), float(value[1]))


def parse_body_parts(top: Section) -> tuple[str, ...]:
    """``body_parts``: BodyPartExamined terms the pipeline is made for (empty: any)."""
    value = top.get("body_parts", [])
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise top.error("body_parts", f"must be a list of body part names, got {value!r}")
    return tuple(v.strip().upper() for v in value)


def parse_code(sec: Section | None) -> Code | None:
    if sec is None:
        return None
    code = Code(
        value=sec.string("code", required=True),
        scheme=sec.string("scheme", "SCT"),
        meaning=sec.string("meaning", required=True),
    )
    sec.finish()
    return code


def parse_labels(raw: Any, origin: str) -> tuple[Label, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise PipelineError(f"{origin}: 'labels' must map label values to label entries")
    labels = []
    for key, entry in raw.items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise PipelineError(f"{origin}: label key {key!r} is not an integer value") from None
        if not 1 <= value <= 65535:
            raise PipelineError(f"{origin}: label value {value} must be in 1..65535")
        if isinstance(entry, str):
            entry = {"name": entry}
        sec = Section(entry, f"labels.{value}", origin)
        name = sec.string("name")
        if not name or not name.strip():
            raise sec.error("name", "every label needs a name")
        color = sec.get("color", required=True)
        if not (
            isinstance(color, list | tuple)
            and len(color) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
        ):
            raise sec.error("color", f"must be three integers 0-255 (RGB), got {color!r}")
        labels.append(
            Label(
                value=value,
                name=name.strip(),
                color=tuple(color),  # type: ignore[arg-type]
                category=parse_code(sec.section("category")),
                type=parse_code(sec.section("type")),
                type_modifier=parse_code(sec.section("type_modifier")),
                expected_ml=_expected_ml(sec),
            )
        )
        sec.finish()
    names = [label.name for label in labels]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PipelineError(f"{origin}: label name(s) used twice: {', '.join(dupes)}")
    return tuple(sorted(labels, key=lambda lab: lab.value))
