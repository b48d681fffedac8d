"""preview.png: axial, coronal and sagittal slices with the labels drawn over them.

For a quick look without Slicer. The volume is turned to the nearest RAS axes
(``nibabel.io_orientation``; an oblique grid is shown on its closest axes, not
resampled), the three slices pass through the centroid of all labelled voxels, and
each panel is scaled by the voxel spacing so millimetres are square on screen.

Display convention (stated in the caption): radiological by default, the patient's
right on the image's left in axial and coronal views, as PACS viewers show it;
``convention="neurological"`` puts the right on the right (Slicer's default). Axial
panels have anterior at the top, coronal and sagittal superior at the top, sagittal
anterior on the left. CT is shown with a soft-tissue window (W 400 / L 40 HU); other
modalities between the 1st and 99th percentile of the body's (non-zero) voxels.
Labels are filled semi-transparently and outlined in full colour; a legend lists every
label present with its colour.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medrecon.atomic import atomic_write_path
from medrecon.errors import InputError
from medrecon.volume import Volume

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL import Image

    from medrecon.pipeline.config import Label

__all__ = ["CONVENTIONS", "CT_WINDOW", "Preview", "render_preview", "write_preview"]

logger = logging.getLogger(__name__)

CONVENTIONS = ("radiological", "neurological")
#: CT soft-tissue window (width, level) in HU.
CT_WINDOW = (400.0, 40.0)

_BACKGROUND = (0, 0, 0)
_TEXT = (235, 235, 235)
_MARGIN = 12
_SWATCH = 14


@dataclass
class Preview:
    """The rendered picture and where each panel lies in it (left, top, right, bottom)."""

    image: Image.Image
    panels: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    #: RAS position (mm) the three slices pass through.
    center_ras: tuple[float, float, float] = (0.0, 0.0, 0.0)


def write_preview(
    path: str | os.PathLike[str],
    image: Volume,
    labels: Volume,
    label_table: Sequence[Label],
    **options,
) -> Path:
    """Render (see :func:`render_preview` for ``options``) and save a PNG atomically."""
    preview = render_preview(image, labels, label_table, **options)
    target = Path(path)
    with atomic_write_path(target) as tmp:
        preview.image.save(tmp, format="PNG", optimize=True)
    logger.info("wrote preview %s (%dx%d)", target, *preview.image.size)
    return target


def render_preview(
    image: Volume,
    labels: Volume,
    label_table: Sequence[Label],
    *,
    modality: str | None = None,
    window: tuple[float, float] | None = None,
    convention: str = "radiological",
    panel_size: int = 360,
    alpha: float = 0.35,
    title: str | None = None,
) -> Preview:
    """The preview picture. ``window`` is (width, level); ``panel_size`` the longest
    side in pixels of the largest panel (all panels share one mm-per-pixel scale)."""
    if convention not in CONVENTIONS:
        raise InputError(f"preview convention must be one of {CONVENTIONS}, got {convention!r}")
    if image.spatial_shape != labels.spatial_shape:
        raise InputError(
            f"image {image.spatial_shape} and label map {labels.spatial_shape} are not on "
            "the same grid; pass the image the labels were made from"
        )
    pixels = np.asarray(image.array if image.array.ndim == 3 else image.array[..., 0])
    gray, lab, spacing, to_ras = _to_ras_axes(pixels, np.asarray(labels.array), image.affine)
    modality = modality or image.meta.modality
    lo, hi = _display_range(gray, modality, window)
    centre = _label_centre(lab)
    slices = _panel_slices(gray, lab, spacing, centre, convention)
    scale = panel_size / max(max(h, w) for _, _, _, (h, w) in slices)
    colours = _colour_lut(label_table, int(lab.max()))
    rendered = {
        name: _render_panel(g, lb, extent, scale, (lo, hi), colours, alpha, letters)
        for name, g, lb, extent, letters in (
            (name, g, lb, extent, _LETTERS[convention][name]) for name, g, lb, extent in slices
        )
    }
    present = [label for label in label_table if np.any(lab == label.value)]
    centre_ras = tuple(float(v) for v in (to_ras @ np.append(centre, 1.0))[:3])
    caption = _caption(convention, modality, (lo, hi), centre_ras, window is not None)
    preview = _compose(rendered, present, caption, title)
    preview.center_ras = centre_ras  # type: ignore[assignment]
    return preview


def _to_ras_axes(
    gray: np.ndarray, lab: np.ndarray, affine: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Arrays flipped/transposed so axes run L->R, P->A, I->S; spacing; new voxel->RAS."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(affine)
    shape = gray.shape
    new_affine = affine @ inv_ornt_aff(ornt, shape)
    spacing = np.sqrt((new_affine[:3, :3] ** 2).sum(axis=0))
    return apply_orientation(gray, ornt), apply_orientation(lab, ornt), spacing, new_affine


def _display_range(
    gray: np.ndarray, modality: str | None, window: tuple[float, float] | None
) -> tuple[float, float]:
    if window is None and (modality or "").upper() == "CT":
        window = CT_WINDOW
    if window is not None:
        width, level = window
        return level - width / 2, level + width / 2
    step = max(1, gray.size // 2_000_000)  # a strided sample is plenty for percentiles
    sample = gray.ravel()[::step].astype(np.float64)
    body = sample[sample > sample.min()]
    body = body if body.size else sample
    lo, hi = np.percentile(body, [1.0, 99.0])
    return float(lo), float(hi if hi > lo else lo + 1.0)


def _label_centre(lab: np.ndarray) -> np.ndarray:
    """Mean index of all labelled voxels (the volume centre when there are none)."""
    mask = lab > 0
    count = int(np.count_nonzero(mask))
    if count == 0:
        return (np.asarray(lab.shape) - 1) / 2.0
    centre = np.empty(3)
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        centre[axis] = float(profile @ np.arange(profile.size)) / count
    return centre


#: Edge letters (left, right, top, bottom) of each panel.
_LETTERS = {
    "radiological": {"axial": "RLAP", "coronal": "RLSI", "sagittal": "APSI"},
    "neurological": {"axial": "LRAP", "coronal": "LRSI", "sagittal": "APSI"},
}


def _panel_slices(gray, lab, spacing, centre, convention):
    """(name, gray 2D, labels 2D, (height_mm, width_mm)) in display orientation.

    Rows run top to bottom and columns left to right on screen, so the RAS-axes
    slice is transposed (first axis -> columns) and flipped where the screen runs
    against the axis: anterior / superior at the top, right on the left if radiological.
    """
    cx, cy, cz = (int(np.rint(c)) for c in centre)
    mirror = convention == "radiological"
    views = (
        ("axial", np.s_[:, :, cz], (spacing[1], spacing[0]), mirror),
        ("coronal", np.s_[:, cy, :], (spacing[2], spacing[0]), mirror),
        ("sagittal", np.s_[cx, :, :], (spacing[2], spacing[1]), True),  # anterior on the left
    )
    out = []
    for name, index, (row_mm, col_mm), flip_columns in views:
        g, lb = (np.flipud(a[index].T) for a in (gray, lab))
        if flip_columns:
            g, lb = np.fliplr(g), np.fliplr(lb)
        out.append((name, g, lb, (g.shape[0] * row_mm, g.shape[1] * col_mm)))
    return out


def _colour_lut(label_table: Sequence[Label], max_value: int) -> np.ndarray:
    lut = np.zeros((max(max_value, max((lb.value for lb in label_table), default=0)) + 1, 3))
    for label in label_table:
        lut[label.value] = label.color
    return lut.astype(np.uint8)


def _render_panel(gray, lab, extent, scale, limits, colours, alpha, letters):
    from PIL import Image, ImageDraw

    height, width = (max(1, int(np.rint(e * scale))) for e in extent)
    lo, hi = limits
    g8 = (np.clip((gray.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)
    g8 = np.ascontiguousarray(g8)
    g8 = np.asarray(
        Image.fromarray(np.ascontiguousarray(g8)).resize((width, height), Image.Resampling.BILINEAR)
    )
    labels = np.asarray(
        Image.fromarray(np.ascontiguousarray(lab.astype(np.int32))).resize(
            (width, height), Image.Resampling.NEAREST
        )
    )
    rgb = np.repeat(g8[..., None], 3, axis=2).astype(np.float64)
    inside = labels > 0
    colour = colours[labels].astype(np.float64)
    rgb[inside] = (1 - alpha) * rgb[inside] + alpha * colour[inside]
    edge = _outline(labels)
    rgb[edge] = colour[edge]
    panel = Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(panel)
    font = _font(13)
    left, right, top, bottom = letters
    draw.text((3, height // 2), left, fill=(255, 255, 0), font=font, anchor="lm")
    draw.text((width - 3, height // 2), right, fill=(255, 255, 0), font=font, anchor="rm")
    draw.text((width // 2, 2), top, fill=(255, 255, 0), font=font, anchor="mt")
    draw.text((width // 2, height - 2), bottom, fill=(255, 255, 0), font=font, anchor="mb")
    return panel


def _outline(labels: np.ndarray) -> np.ndarray:
    """Labelled pixels with a 4-neighbour of another value (or the panel edge)."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    differs = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    return differs & (labels > 0)


def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _caption(convention, modality, limits, centre_ras, explicit_window) -> str:
    lo, hi = limits
    side = (
        "patient right on image left"
        if convention == "radiological"
        else "patient right on image right"
    )
    if (modality or "").upper() == "CT" or explicit_window:
        shown = f"window W {hi - lo:g} / L {(hi + lo) / 2:g}"
    else:
        shown = f"intensity 1-99th percentile ({lo:.4g} to {hi:.4g})"
    x, y, z = centre_ras
    return (
        f"{convention.capitalize()} convention ({side}). Slices through the labels' "
        f"centroid at RAS ({x:.1f}, {y:.1f}, {z:.1f}) mm; nearest axes; {shown}."
    )


def _wrap(text: str, font, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and font.getlength(candidate) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return [*lines, line]


def _compose(rendered, present, caption, title) -> Preview:
    from PIL import Image, ImageDraw

    font, small = _font(15), _font(13)
    panels_w = sum(p.width for p in rendered.values()) + _MARGIN * (len(rendered) + 1)
    heading = 24
    panels_h = max(p.height for p in rendered.values())
    entry_w = _SWATCH + 8 + max((int(small.getlength(lb.name)) for lb in present), default=0)
    columns = max(1, (panels_w - _MARGIN) // (entry_w + _MARGIN))
    rows = -(-len(present) // columns)
    lines = _wrap(caption, small, panels_w - 2 * _MARGIN)
    legend_top = heading + panels_h + _MARGIN * 2 + 17 * len(lines)
    height = legend_top + rows * (_SWATCH + 6) + _MARGIN + (22 if title else 0)
    canvas = Image.new("RGB", (panels_w, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    preview = Preview(canvas)
    x = _MARGIN
    for name, panel in rendered.items():
        canvas.paste(panel, (x, heading))
        draw.text((x, 4), name.capitalize(), fill=_TEXT, font=font)
        preview.panels[name] = (x, heading, x + panel.width, heading + panel.height)
        x += panel.width + _MARGIN
    for n, line in enumerate(lines):
        draw.text((_MARGIN, heading + panels_h + _MARGIN + 17 * n), line, fill=_TEXT, font=small)
    for n, label in enumerate(present):
        left = _MARGIN + (n % columns) * (entry_w + _MARGIN)
        top = legend_top + (n // columns) * (_SWATCH + 6)
        draw.rectangle((left, top, left + _SWATCH - 1, top + _SWATCH - 1), fill=label.color)
        draw.text((left + _SWATCH + 6, top - 1), label.name, fill=_TEXT, font=small)
    if title:
        draw.text((_MARGIN, height - 20), title, fill=_TEXT, font=small)
    return preview
