"""DICOMweb (QIDO-RS) pull adapter: studies at a hospital PACS become ImagingStudy references."""
