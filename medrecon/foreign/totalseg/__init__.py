"""TotalSegmentator's models as a user has them, run by medrecon.

``load_totalsegmentator("total")`` (or ``"totalsegmentator:total:fast"``) finds
the nnU-Net folders TotalSegmentator downloaded and returns a Pipeline whose
engine (:class:`~medrecon.foreign.totalseg.engine.TotalSegSegmenter`) runs every
part and merges them as TotalSegmentator does. Nothing here imports torch or
nnU-Net until a model is loaded.
"""

from __future__ import annotations

from medrecon.foreign.totalseg.loader import TotalSegModel, load_totalsegmentator
from medrecon.foreign.totalseg.tasks import PREFIX, TaskSpec, parse_spec, task_names, task_spec

__all__ = [
    "PREFIX",
    "TaskSpec",
    "TotalSegModel",
    "load_totalsegmentator",
    "parse_spec",
    "task_names",
    "task_spec",
]
