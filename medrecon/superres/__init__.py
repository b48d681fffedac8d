"""Slice-to-volume reconstruction of thick and gapped slice stacks (issue 14).

This package holds the foundation: the slice profile (:mod:`.profile`), the exact
forward operator (:mod:`.degrade`), output grids and resampling (:mod:`.grid`),
the interpolation baselines and metrics (:mod:`.baselines`) and self-supervised
training pairs (:mod:`.pairs`). See docs/reconstruct.md.
"""

from medrecon.superres.profile import (
    ReconstructError,
    SliceProfile,
    profile_from_volume,
    thick_axis,
)

__all__ = ["ReconstructError", "SliceProfile", "profile_from_volume", "thick_axis"]
