"""Folding instance headers (pydicom Datasets) into study- and series-level DICOM JSON.

A QIDO-RS server answers at study and series level and counts instances for us; a folder of
files gives one header per instance. :class:`StudyHeaders` does the server's part: it keeps
the study and series attributes (the first instance that has an attribute supplies it), counts
distinct SOP Instance UIDs per series (the same instance saved twice, e.g. in another
transfer syntax, counts once) and fills the attributes QIDO-RS computes (PS3.18 §10.6.3.3:
Modalities in Study, Number of Study Related Series/Instances, Number of Series Related
Instances). It keeps only these attributes, never the datasets, so a large first run of a
folder holds a few kilobytes per study in memory, not every header.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from adapters.base import BadMessage

from . import json_model as dj

JSON = dict[str, Any]


def _value(ds: Dataset, keyword: str) -> str | None:
    found = ds.get(keyword)
    text = str(found).strip() if found is not None else ""
    return text or None


@dataclass(frozen=True)
class InstanceHeader:
    """What the exchange keeps of one instance's header: its UIDs and two JSON fragments."""

    study_uid: str | None
    series_uid: str | None
    sop_uid: str | None
    patient_id: str | None
    study: JSON
    series: JSON

    @classmethod
    def from_dataset(cls, ds: Dataset) -> InstanceHeader:
        return cls(
            study_uid=_value(ds, "StudyInstanceUID"),
            series_uid=_value(ds, "SeriesInstanceUID"),
            sop_uid=_value(ds, "SOPInstanceUID"),
            patient_id=_value(ds, "PatientID"),
            study=dj.from_dataset(ds, dj.STUDY_TAGS),
            series=dj.from_dataset(ds, dj.SERIES_TAGS),
        )

    def placement_fault(self) -> BadMessage | None:
        """Why this instance cannot be placed in a study and series, if it cannot."""
        for value, name, tag in (
            (self.study_uid, "StudyInstanceUID", "(0020,000D)"),
            (self.series_uid, "SeriesInstanceUID", "(0020,000E)"),
            (self.sop_uid, "SOPInstanceUID", "(0008,0018)"),
        ):
            if value is None:
                return BadMessage(f"{name} {tag} is missing", location=tag)
        return None


def _fill(target: JSON, source: JSON) -> None:
    """Copy attributes ``target`` lacks or has empty; the first instance with a value wins."""
    for tag, element in source.items():
        if tag not in target or "Value" not in target[tag]:
            target[tag] = element


class _Series:
    def __init__(self) -> None:
        self.attributes: JSON = {}
        self.instances: set[str] = set()


class StudyHeaders:
    """Study- and series-level attributes of one study, accumulated instance by instance."""

    def __init__(self, study_uid: str) -> None:
        self.study_uid = study_uid
        self.attributes: JSON = {}
        self.series: dict[str, _Series] = {}
        self.patient_ids: list[str] = []

    def add(self, header: InstanceHeader | Dataset) -> None:
        """Fold in one instance's header; BadMessage if it lacks the UIDs that place it."""
        if isinstance(header, Dataset):
            header = InstanceHeader.from_dataset(header)
        fault = header.placement_fault()
        if fault is not None:
            raise fault
        if header.study_uid != self.study_uid:
            raise BadMessage(
                f"instance belongs to study {header.study_uid}, not {self.study_uid}",
                location="(0020,000D)",
            )
        assert header.series_uid is not None and header.sop_uid is not None
        _fill(self.attributes, header.study)
        if header.patient_id is not None and header.patient_id not in self.patient_ids:
            self.patient_ids.append(header.patient_id)
        series = self.series.setdefault(header.series_uid, _Series())
        _fill(series.attributes, header.series)
        series.instances.add(header.sop_uid)

    def check(self) -> None:
        """BadMessage when the instances disagree on who the patient is.

        Two PatientIDs in one study means a mix-up at the modality or PACS; guessing would
        put one patient's images in another's record, so the whole study is held back.
        """
        if len(self.patient_ids) > 1:
            raise BadMessage(
                "instances of the study disagree on PatientID: "
                + ", ".join(repr(p) for p in self.patient_ids),
                location="(0010,0020)",
            )

    @property
    def instance_count(self) -> int:
        return sum(len(s.instances) for s in self.series.values())

    def study_json(self) -> JSON:
        out = dict(self.attributes)
        modalities = sorted(
            {m for s in self.series.values() for m in dj.texts(s.attributes, dj.MODALITY)}
        )
        if modalities:
            out[dj.MODALITIES_IN_STUDY] = {"vr": "CS", "Value": modalities}
        out[dj.NUMBER_OF_STUDY_RELATED_SERIES] = {"vr": "IS", "Value": [len(self.series)]}
        out[dj.NUMBER_OF_STUDY_RELATED_INSTANCES] = {"vr": "IS", "Value": [self.instance_count]}
        return out

    def series_json(self) -> list[JSON]:
        out = []
        for series in self.series.values():
            attributes = dict(series.attributes)
            attributes[dj.NUMBER_OF_SERIES_RELATED_INSTANCES] = {
                "vr": "IS",
                "Value": [len(series.instances)],
            }
            out.append(attributes)
        return out
