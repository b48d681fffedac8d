"""Is the study what the pipeline is made for? Modality and body part, checked
before any model is loaded.

* **Modality**: a DICOM series names it; a NIfTI, NRRD or MHA file does not, so it
  is inferred from the intensities (:func:`~medrecon.pipeline.auto.guess_modality`:
  CT has air near -1000 HU) and the result says it was inferred.
* **Body part**: DICOM's BodyPartExamined (0018,0015), when it holds one of the
  standard's defined terms (PS3.16 CID 4031 and the PS3.3 body part list), is
  checked against the pipeline's ``body_parts``. Free text that is not a defined
  term ("ABD_PEL", a local protocol name) is not judged: refusing it would turn
  away good studies.
* **The image, for a head**: a CT whose header names no defined body part (a NIfTI,
  free text) and whose axial slices are mostly a skull ring around brain-density
  tissue (:func:`~medrecon.pipeline.skull.head_extent`) gets a warning when the
  pipeline does not list HEAD or BRAIN. Only a warning: an image is judged less surely
  than a header, and the refine step ``keep_below_skull`` removes organs in the head.

A mismatch raises :class:`~medrecon.errors.OutOfDomainError` naming the study,
what it is, what the pipeline wants and the way out (another pipeline, or
``force`` to segment it anyway, which turns the refusal into a warning).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from medrecon.errors import OutOfDomainError
from medrecon.pipeline.auto import UNTAGGED, guess_modality
from medrecon.pipeline.skull import head_extent
from medrecon.volume import Volume

__all__ = ["DEFINED_BODY_PARTS", "DomainCheck", "body_part_of", "check_domain", "normalise"]

logger = logging.getLogger(__name__)

_TERMS = """
    ABDOMEN ABDOMENPELVIS ADRENAL ANKLE AORTA ARM AXILLA BACK BLADDER BRAIN BREAST BRONCHUS
    BUTTOCK CALCANEUS CALF CAROTID CEREBELLUM CERVIX CHEEK CHEST CHESTABDOMEN CHESTABDPELVIS
    CIRCLEOFWILLIS CLAVICLE COCCYX COLON CORNEA CORONARYARTERY CSPINE CTSPINE DUODENUM EAR
    ELBOW ESOPHAGUS EXTREMITY EYE EYELID FACE FEMUR FINGER FOOT FOREARM GALLBLADDER HAND HEAD
    HEADNECK HEART HIP HUMERUS IAC ILEUM ILIUM JAW JEJUNUM KIDNEY KNEE LARYNX LEG LIVER LSPINE
    LSSPINE LUNG MAXILLA MEDIASTINUM MOUTH NECK NECKCHEST NECKCHESTABDOMEN NECKCHESTABDPELVIS
    NOSE ORBIT OVARY PANCREAS PAROTID PATELLA PELVIS PENIS PHARYNX PROSTATE RADIUS RECTUM RIB
    SACRUM SCALP SCAPULA SCLERA SCROTUM SHOULDER SKULL SPINE SPLEEN SSPINE STERNUM STOMACH
    SUBMANDIBULAR TESTIS THIGH THORAX THUMB THYMUS THYROID TIBIA TLSPINE TMJ TOE TONGUE TRACHEA
    ULNA URETER URETHRA UTERUS VAGINA VULVA WHOLEBODY WRIST ZYGOMA
"""
#: BodyPartExamined defined terms (DICOM PS3.16 CID 4031 / PS3.3 Annex L, facts).
DEFINED_BODY_PARTS = frozenset(_TERMS.split())


def normalise(text: str) -> str:
    """``"Chest / Abdomen"`` -> ``"CHESTABDOMEN"``: upper case, letters only."""
    return re.sub(r"[^A-Z]", "", text.upper())


@dataclass(frozen=True)
class DomainCheck:
    """What was checked, for run.json: the modality and how it is known, the body part."""

    modality: str
    modality_source: str
    body_part: str | None
    warnings: tuple[str, ...] = ()


def body_part_of(volume: Volume) -> str | None:
    """BodyPartExamined, as the DICOM loader recorded it (None for NIfTI & co.)."""
    recorded = volume.meta.extra.get("body_part")
    return str(recorded) if recorded else None


def _shown(terms: list[str], n: int = 4) -> str:
    more = f" and {len(terms) - n} more (`medrecon pipelines` lists them)" if len(terms) > n else ""
    return ", ".join(terms[:n]) + more


def _modality(volume: Volume) -> tuple[str, str]:
    tagged = (volume.meta.modality or "").strip().upper()
    if tagged not in UNTAGGED:
        return tagged, "modality from the input's header"
    guess = guess_modality(volume.array)
    return guess.modality, f"modality inferred from its intensities: {guess.reason}"


#: Body parts whose pipelines expect a head: the image check does not warn for them.
_HEAD_PARTS = frozenset({"HEAD", "BRAIN", "SKULL", "HEADNECK"})
#: Share of the body's axial extent in head slices above which a CT counts as a head scan
#: (a whole-body CT holds a head too, over a small share).
_HEAD_SHARE = 0.5


def _looks_like_head(volume: Volume) -> str | None:
    """Why ``volume`` (a CT) looks like a head scan, or None."""
    if volume.array.ndim != 3:
        return None
    found = head_extent(volume.array, volume.affine, min_head_mm=20.0)
    if found is None or found.head_mm < _HEAD_SHARE * found.body_mm:
        return None
    return (
        f"{found.head_mm:.0f} of its {found.body_mm:.0f} mm are axial slices with a skull "
        "ring around brain-density tissue"
    )


def check_domain(
    volume: Volume, pipeline, *, where: str, force: bool = False, body_part: str | None = None
) -> DomainCheck:
    """Refuse (or, with ``force``, warn about) a study the pipeline is not made for.

    ``body_part`` overrides the value the loader recorded (tests, callers
    that already have it).
    """
    warnings: list[str] = []
    modality, source = _modality(volume)
    wanted = pipeline.modality.upper()
    if modality != wanted:
        message = (
            f"{where}: the study is {modality} ({source}) but pipeline "
            f"{pipeline.name} is made for {wanted} images"
        )
        if not force:
            raise OutOfDomainError(
                f"{message}. Use a pipeline made for {modality} (or --model auto), or pass "
                "--force to segment it anyway."
            )
        warnings.append(f"{message}; segmented anyway (--force): expect wrong labels")
    part = body_part if body_part is not None else body_part_of(volume)
    listed = [normalise(p) for p in getattr(pipeline, "body_parts", ())]
    allowed = set(listed)
    if part and allowed:
        key = normalise(part)
        if key in DEFINED_BODY_PARTS and key not in allowed:
            message = (
                f"{where}: the study's body part is {part} (BodyPartExamined) but pipeline "
                f"{pipeline.name} is made for {_shown(listed)}"
            )
            if not force:
                raise OutOfDomainError(
                    f"{message}. Use a pipeline made for that body part, or pass --force to "
                    "segment it anyway."
                )
            warnings.append(f"{message}; segmented anyway (--force): expect wrong labels")
        elif key not in DEFINED_BODY_PARTS:
            logger.info("%s: body part %r is not a DICOM defined term; not checked", where, part)
    judged = bool(part) and normalise(part) in DEFINED_BODY_PARTS
    if modality == "CT" and allowed and not judged and not allowed & _HEAD_PARTS:
        head = _looks_like_head(volume)
        if head:
            warnings.append(
                f"{where}: the image looks like a head ({head}) but pipeline "
                f"{pipeline.name} is made for {_shown(listed)}: expect no or wrong labels"
            )
    for w in warnings:  # returned for run.json and the CLI's summary; logged once here
        logger.info("%s", w)
    return DomainCheck(modality, source, part, tuple(warnings))
