"""DICOM folder adapter: headers of the files in a folder become ImagingStudy references."""
