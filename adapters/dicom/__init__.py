"""DICOM → FHIR mapping shared by the DICOMweb and DICOM-folder adapters.

``study.study_unit`` turns one study (DICOM JSON model) into a unit of Patient, Endpoint and
ImagingStudy; ``dataset.StudyHeaders`` folds pydicom headers into that model first.
"""
