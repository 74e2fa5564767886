"""Reading the DICOM JSON model (DICOM PS3.18 §F.2), the one shape the imaging mapping reads.

QIDO-RS answers in this model, and the folder adapter turns each pydicom header into it
(:func:`from_dataset`), so one mapping (``study.py``) serves both sources and a study seen
through both comes out the same. An attribute is ``{"vr": "LO", "Value": [...]}`` keyed by
its tag as eight upper-case hex digits; ``Value`` may be absent (zero-length attribute).
Servers differ in small ways that the readers here absorb: IS/DS numbers arrive as JSON
numbers (PS3.18 §F.2.3) or as strings, and empty strings stand for missing values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom.dataset import Dataset
from pydicom.tag import Tag

JSON = dict[str, Any]

# Attributes the imaging mapping reads, by keyword (PS3.6 data dictionary).
SPECIFIC_CHARACTER_SET = "00080005"
SOP_CLASS_UID = "00080016"
SOP_INSTANCE_UID = "00080018"
STUDY_DATE = "00080020"
SERIES_DATE = "00080021"
STUDY_TIME = "00080030"
SERIES_TIME = "00080031"
ACCESSION_NUMBER = "00080050"
MODALITY = "00080060"
MODALITIES_IN_STUDY = "00080061"
REFERRING_PHYSICIAN_NAME = "00080090"
TIMEZONE_OFFSET_FROM_UTC = "00080201"
STUDY_DESCRIPTION = "00081030"
PROCEDURE_CODE_SEQUENCE = "00081032"
SERIES_DESCRIPTION = "0008103E"
CODE_VALUE = "00080100"
CODING_SCHEME_DESIGNATOR = "00080102"
CODE_MEANING = "00080104"
PATIENT_NAME = "00100010"
PATIENT_ID = "00100020"
ISSUER_OF_PATIENT_ID = "00100021"
TYPE_OF_PATIENT_ID = "00100022"
PATIENT_BIRTH_DATE = "00100030"
PATIENT_SEX = "00100040"
OTHER_PATIENT_IDS = "00101000"
OTHER_PATIENT_IDS_SEQUENCE = "00101002"
BODY_PART_EXAMINED = "00180015"
STUDY_INSTANCE_UID = "0020000D"
SERIES_INSTANCE_UID = "0020000E"
STUDY_ID = "00200010"
SERIES_NUMBER = "00200011"
INSTANCE_NUMBER = "00200013"
NUMBER_OF_STUDY_RELATED_SERIES = "00201206"
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"
REQUESTED_PROCEDURE_DESCRIPTION = "00321060"
REQUESTED_PROCEDURE_CODE_SEQUENCE = "00321064"

# Study-level attributes (Patient and General Study modules plus what QIDO-RS computes).
# Specific Character Set is left out: values in the JSON model are already Unicode.
STUDY_TAGS: tuple[str, ...] = (
    STUDY_DATE,
    STUDY_TIME,
    ACCESSION_NUMBER,
    REFERRING_PHYSICIAN_NAME,
    TIMEZONE_OFFSET_FROM_UTC,
    STUDY_DESCRIPTION,
    PROCEDURE_CODE_SEQUENCE,
    PATIENT_NAME,
    PATIENT_ID,
    ISSUER_OF_PATIENT_ID,
    PATIENT_BIRTH_DATE,
    PATIENT_SEX,
    OTHER_PATIENT_IDS,
    OTHER_PATIENT_IDS_SEQUENCE,
    STUDY_INSTANCE_UID,
    STUDY_ID,
    REQUESTED_PROCEDURE_DESCRIPTION,
    REQUESTED_PROCEDURE_CODE_SEQUENCE,
)

# Series-level attributes (General Series module).
SERIES_TAGS: tuple[str, ...] = (
    SERIES_DATE,
    SERIES_TIME,
    MODALITY,
    SERIES_DESCRIPTION,
    BODY_PART_EXAMINED,
    SERIES_INSTANCE_UID,
    SERIES_NUMBER,
)


def element(obj: JSON, tag: str) -> JSON | None:
    found = obj.get(tag)
    return found if isinstance(found, dict) else None


def values(obj: JSON, tag: str) -> list[Any]:
    """All values of an attribute; empty when absent or zero-length."""
    found = element(obj, tag)
    if found is None:
        return []
    listed = found.get("Value")
    return listed if isinstance(listed, list) else []


def texts(obj: JSON, tag: str) -> list[str]:
    """String values, stripped (DICOM pads to even length), empty ones dropped."""
    out: list[str] = []
    for value in values(obj, tag):
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            stripped = str(value).strip()
            if stripped:
                out.append(stripped)
    return out


def text(obj: JSON, tag: str) -> str | None:
    found = texts(obj, tag)
    return found[0] if found else None


def integer(obj: JSON, tag: str) -> int | None:
    """An IS value, whether the server sent it as a JSON number or as a string."""
    for value in values(obj, tag):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


def person_names(obj: JSON, tag: str) -> list[JSON]:
    """PN values as ``{"Alphabetic": ..., "Ideographic": ..., "Phonetic": ...}`` (§F.2.2)."""
    return [v for v in values(obj, tag) if isinstance(v, dict)]


def items(obj: JSON, tag: str) -> list[JSON]:
    """The items of a sequence (SQ) attribute."""
    return [v for v in values(obj, tag) if isinstance(v, dict)]


def from_dataset(ds: Dataset, tags: Iterable[str]) -> JSON:
    """The named attributes of a pydicom dataset in the DICOM JSON model.

    pydicom decodes text with the dataset's Specific Character Set (GB18030, ISO_IR 192, ...)
    and splits PN into its alphabetic/ideographic/phonetic groups, as a QIDO-RS server would.
    """
    out: JSON = {}
    for tag in tags:
        key = Tag(int(tag, 16))
        if key in ds:
            out[tag] = ds[key].to_json_dict(None, 1024)
    return out
