"""preview.png: axial, coronal and sagittal slices with the labels drawn over them.

For a quick look without Slicer. The volume is turned to the nearest RAS axes
(``nibabel.io_orientation``; an oblique grid is shown on its closest axes, not
resampled) and each panel is scaled by the voxel spacing so millimetres are square
on screen. The slices are chosen so every label found shows in at least one
panel (:mod:`medrecon.export.preview_planes`): the three main slices start at the
labels' centroid, and labels none of them shows get extra panels below.

Display convention (stated in the caption): radiological by default, the patient's
right on the image's left in axial and coronal views, as PACS viewers show it;
``convention="neurological"`` puts the right on the right (Slicer's default). Axial
panels have anterior at the top, coronal and sagittal superior at the top, sagittal
anterior on the left; the orientation letters stand in the margin around each
panel, never on the anatomy. CT is shown with a soft-tissue window (W 400 / L 40
HU); other modalities between the 1st and 99th percentile of the body's (non-zero)
voxels. Labels are filled semi-transparently and outlined in full colour, in
overlay colours that differ clearly between every two labels shown
(:mod:`medrecon.export.palette`; the Slicer files keep the terminology colours); a
legend lists every label present with its overlay colour.
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
from medrecon.export.palette import distinct_colours
from medrecon.export.preview_planes import choose_slices
from medrecon.volume import Volume

if TYPE_CHECKING:  # pragma: no cover - typing only
    from PIL import Image

    from medrecon.labels import Label

__all__ = ["CONVENTIONS", "CT_WINDOW", "Preview", "render_preview", "write_preview"]

logger = logging.getLogger(__name__)

CONVENTIONS = ("radiological", "neurological")
#: CT soft-tissue window (width, level) in HU.
CT_WINDOW = (400.0, 40.0)

_BACKGROUND = (0, 0, 0)
_TEXT = (235, 235, 235)
_MARK = (255, 255, 0)
_MARGIN = 12
_GUTTER = 16  # around each panel, for its orientation letters
_SWATCH = 14
_PER_ROW = 3
_VIEWS = {2: "axial", 1: "coronal", 0: "sagittal"}  # RAS axis a slice is across


@dataclass
class Preview:
    """The rendered picture and where each panel lies in it (left, top, right, bottom)."""

    image: Image.Image
    panels: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    #: RAS position (mm) the three main slices pass through.
    center_ras: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Overlay colour of each label value shown (the legend's colours).
    colours: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: Label values each panel shows (drawn pixels of that label in it).
    shown: dict[str, set[int]] = field(default_factory=dict)
    #: Found label values no panel shows (only past the extra-panel limit).
    missing: list[int] = field(default_factory=list)


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
    counts = np.bincount(lab.ravel().astype(np.int64, copy=False))
    present = [lb for lb in label_table if lb.value < counts.size and counts[lb.value] > 0]
    # Largest first: big organs keep their terminology colour where it is distinct.
    by_size = sorted(present, key=lambda lb: -int(counts[lb.value]))
    palette = distinct_colours([lb.color for lb in by_size])
    overlay = {lb.value: colour for lb, colour in zip(by_size, palette)}
    values = [lb.value for lb in present]
    (cx, cy, cz), extra, missing = choose_slices(lab, values, _label_centre(lab))
    if missing:
        logger.warning("preview: %d label(s) shown in no panel: %s", len(missing), missing)
    wanted = [("axial", 2, cz), ("coronal", 1, cy), ("sagittal", 0, cx)]
    for axis, index in extra:  # "axial 2", "axial 3", "coronal 2"...
        nth = 1 + sum(1 for _, a, _ in wanted if a == axis)
        wanted.append((f"{_VIEWS[axis]} {nth}", axis, index))
    slices = [(name, *_panel(gray, lab, spacing, axis, i, convention)) for name, axis, i in wanted]
    scale = panel_size / max(max(h, w) for _, _, _, (h, w) in slices)
    colours = _colour_lut(overlay, int(lab.max()))
    rendered, shown = {}, {}
    for name, g, lb, extent in slices:
        rendered[name], shown[name] = _render_panel(g, lb, extent, scale, (lo, hi), colours, alpha)
    letters = {name: _LETTERS[convention][_VIEWS[axis]] for name, axis, _ in wanted}
    centre_ras = tuple(float(v) for v in (to_ras @ np.array([cx, cy, cz, 1.0]))[:3])
    main = (cx, cy, cz)
    where = [(name, (to_ras @ _point(main, axis, i))[axis]) for name, axis, i in wanted[3:]]
    caption = _caption(convention, modality, (lo, hi), centre_ras, window is not None, where)
    legend = [(lb, overlay[lb.value]) for lb in present]
    preview = _compose(rendered, letters, legend, caption, title)
    preview.center_ras = centre_ras  # type: ignore[assignment]
    preview.colours, preview.shown, preview.missing = overlay, shown, missing
    return preview


def _point(main, axis: int, index: int) -> np.ndarray:
    """Homogeneous voxel index of the main slices' crossing, moved to ``index`` on ``axis``."""
    point = np.array([*main, 1.0], dtype=np.float64)
    point[axis] = index
    return point


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


def _panel(gray, lab, spacing, axis: int, index: int, convention: str):
    """(gray 2D, labels 2D, (height_mm, width_mm)) of the slice ``index`` across RAS
    ``axis``, in display orientation.

    Rows run top to bottom and columns left to right on screen, so the RAS-axes
    slice is transposed (first axis -> columns) and flipped where the screen runs
    against the axis: anterior / superior at the top, right on the left if radiological.
    """
    mirror = convention == "radiological"
    index_of, (row_mm, col_mm), flip_columns = {
        2: (np.s_[:, :, index], (spacing[1], spacing[0]), mirror),
        1: (np.s_[:, index, :], (spacing[2], spacing[0]), mirror),
        0: (np.s_[index, :, :], (spacing[2], spacing[1]), True),  # anterior on the left
    }[axis]
    g, lb = (np.flipud(a[index_of].T) for a in (gray, lab))
    if flip_columns:
        g, lb = np.fliplr(g), np.fliplr(lb)
    return g, lb, (g.shape[0] * row_mm, g.shape[1] * col_mm)


def _colour_lut(overlay: dict[int, tuple[int, int, int]], max_value: int) -> np.ndarray:
    lut = np.zeros((max(max_value, max(overlay, default=0)) + 1, 3))
    for value, colour in overlay.items():
        lut[value] = colour
    return lut.astype(np.uint8)


def _render_panel(gray, lab, extent, scale, limits, colours, alpha):
    """The panel picture, and the label values drawn in it."""
    from PIL import Image

    height, width = (max(1, int(np.rint(e * scale))) for e in extent)
    lo, hi = limits
    g8 = (np.clip((gray.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)
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
    shown = {int(v) for v in np.unique(labels[inside])}
    return Image.fromarray(np.rint(rgb).astype(np.uint8), "RGB"), shown


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


def _caption(convention, modality, limits, centre_ras, explicit_window, extra) -> str:
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
    axis_name = {"axial": "S", "coronal": "A", "sagittal": "R"}
    more = "".join(f"; {name} at {axis_name[name.split()[0]]} {mm:.1f} mm" for name, mm in extra)
    return (
        f"{convention.capitalize()} convention ({side}). Slices at RAS ({x:.1f}, {y:.1f}, "
        f"{z:.1f}) mm, chosen so every label found shows in a panel{more}; nearest axes; "
        f"{shown}. Overlay colours differ from the Slicer files' where labels looked alike."
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


def _letters(draw, box, letters, font) -> None:
    """Orientation letters in the gutter around the panel ``box``, off the image."""
    left, top, right, bottom = box
    west, east, north, south = letters
    mid_y, mid_x, half = (top + bottom) // 2, (left + right) // 2, _GUTTER // 2
    draw.text((left - half, mid_y), west, fill=_MARK, font=font, anchor="mm")
    draw.text((right + half, mid_y), east, fill=_MARK, font=font, anchor="mm")
    draw.text((mid_x, top - half), north, fill=_MARK, font=font, anchor="mm")
    draw.text((mid_x, bottom + half), south, fill=_MARK, font=font, anchor="mm")


def _compose(rendered, letters, legend, caption, title) -> Preview:
    from PIL import Image, ImageDraw

    font, small, mark = _font(15), _font(13), _font(13)
    names = list(rendered)
    rows = [names[i : i + _PER_ROW] for i in range(0, len(names), _PER_ROW)]
    heading = 20
    cell_w = [sum(rendered[n].width + 2 * _GUTTER for n in row) for row in rows]
    row_h = [heading + 2 * _GUTTER + max(rendered[n].height for n in row) for row in rows]
    panels_w = max(cell_w) + _MARGIN * (_PER_ROW + 1)
    entry_w = _SWATCH + 8 + max((int(small.getlength(lb.name)) for lb, _ in legend), default=0)
    columns = max(1, (panels_w - _MARGIN) // (entry_w + _MARGIN))
    legend_rows = -(-len(legend) // columns)
    lines = _wrap(caption, small, panels_w - 2 * _MARGIN)
    caption_top = sum(row_h) + _MARGIN
    legend_top = caption_top + 17 * len(lines) + _MARGIN
    height = legend_top + legend_rows * (_SWATCH + 6) + _MARGIN + (22 if title else 0)
    canvas = Image.new("RGB", (panels_w, height), _BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    preview = Preview(canvas)
    y = 0
    for row, h in zip(rows, row_h):
        x = _MARGIN
        for name in row:
            panel = rendered[name]
            box = (x + _GUTTER, y + heading + _GUTTER)
            box = (*box, box[0] + panel.width, box[1] + panel.height)
            canvas.paste(panel, box[:2])
            draw.text((x, y + 2), name.capitalize(), fill=_TEXT, font=font)
            _letters(draw, box, letters[name], mark)
            preview.panels[name] = box
            x += panel.width + 2 * _GUTTER + _MARGIN
        y += h
    for n, line in enumerate(lines):
        draw.text((_MARGIN, caption_top + 17 * n), line, fill=_TEXT, font=small)
    for n, (label, colour) in enumerate(legend):
        left = _MARGIN + (n % columns) * (entry_w + _MARGIN)
        top = legend_top + (n // columns) * (_SWATCH + 6)
        draw.rectangle((left, top, left + _SWATCH - 1, top + _SWATCH - 1), fill=colour)
        draw.text((left + _SWATCH + 6, top - 1), label.name, fill=_TEXT, font=small)
    if title:
        draw.text((_MARGIN, height - 20), title, fill=_TEXT, font=small)
    return preview
