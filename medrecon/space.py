"""Patient coordinates: Volume affines are RAS (as nibabel's); DICOM and ITK use LPS."""

from __future__ import annotations

import numpy as np

__all__ = ["LPS_TO_RAS"]

#: Flips x and y: DICOM/ITK patient coordinates (LPS) <-> RAS (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
