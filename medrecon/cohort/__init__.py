"""Cohort processing: many studies through ``medrecon run``, resumable and fault-isolated.

``run_cohort(INPUT, OUTDIR, spec)`` (the ``medrecon batch`` command) runs each
study into ``OUTDIR/<study>/`` on the local engine (worker processes holding
their models) or on Ray, and writes ``OUTDIR/cohort.csv`` and ``OUTDIR/cohort.log``;
``spec`` is a :class:`CohortSpec` (default: the auto model on one local worker).
"""

from medrecon.cohort.progress import CohortEvent, ProgressBar
from medrecon.cohort.runner import CohortResult, run_cohort
from medrecon.cohort.spec import CohortSpec, EngineKind, EngineSettings, Reporting, StudySettings
from medrecon.cohort.state import StudyRecord
from medrecon.cohort.studies import Study, discover_studies, read_manifest
from medrecon.cohort.table import COHORT_CSV, write_cohort_csv

__all__ = [
    "COHORT_CSV",
    "CohortEvent",
    "CohortResult",
    "CohortSpec",
    "EngineKind",
    "EngineSettings",
    "ProgressBar",
    "Reporting",
    "Study",
    "StudyRecord",
    "StudySettings",
    "discover_studies",
    "read_manifest",
    "run_cohort",
    "write_cohort_csv",
]
