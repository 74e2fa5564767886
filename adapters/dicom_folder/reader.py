"""Reading one file's DICOM header, and saying precisely why a file cannot be used.

Headers only: ``stop_before_pixels`` stops at Pixel Data (7FE0,0010), so a 500 MB CT costs a
few kilobytes of reading and a file whose pixels are cut short still indexes (its header is
whole). ``force=False``: a file without the 128-byte preamble and ``DICM`` prefix (PS3.10
§7.1) is refused, not guessed at; with ``force=True`` pydicom makes a one-element dataset out
of arbitrary bytes.

pydicom stops quietly at end of file, so truncation is checked here, from what the parser
left behind:

1. an element whose value is shorter than its declared length (cut inside a value);
2. bytes after the last complete element that do not make an element header (cut inside a
   header);
3. an image SOP class whose file ends before Pixel Data (cut exactly between elements).

A cut between two elements of a non-image object (an SR, say) is indistinguishable from a
complete file; nothing short of the sender's checksum can tell.
"""

from __future__ import annotations

import logging
import os
import struct
import warnings
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from adapters.base import BadMessage
from adapters.dicom.dataset import InstanceHeader

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # DICOMDIR (PS3.10 §8): an index, no study
UNDEFINED_LENGTH = 0xFFFFFFFF


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _truncation(ds: Dataset, position: int, size: int) -> str | None:
    """Why the header looks cut short (rules 1-3 of the module docstring), or None."""
    last_end = 0
    last_is_raw = True
    # keys(), not iteration: iterating a Dataset converts every raw element it passes.
    for tag in ds.keys():  # noqa: SIM118
        element: object = ds.get_item(tag)
        if not isinstance(element, RawDataElement):
            last_is_raw = False  # already parsed (an undefined-length sequence): end unknown
            continue
        last_is_raw = True
        if element.length == UNDEFINED_LENGTH or element.value is None:
            continue
        if len(element.value) < element.length:
            return (
                f"file is truncated inside element {_tag(tag)}: {len(element.value)} of "
                f"{element.length} value bytes present"
            )
        last_end = max(last_end, element.value_tell + element.length)
    stopped_at_pixels = position < size
    if stopped_at_pixels:
        return None
    if last_is_raw and 0 < last_end < size:
        return (
            f"file is truncated: {size - last_end} byte(s) after the last complete element "
            "do not make an element header"
        )
    sop_class = str(ds.get("SOPClassUID", "")).strip()
    if sop_class and "Image Storage" in UID(sop_class).name:
        return (
            f"file is truncated: {UID(sop_class).name} instance ends before its Pixel Data "
            "(7FE0,0010)"
        )
    return None


def _parse(fp: BinaryIO, size: int) -> Dataset:
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, force=False)
    except InvalidDicomError as exc:
        raise BadMessage(
            "not a DICOM Part 10 file: no 'DICM' prefix after the 128-byte preamble "
            f"(PS3.10 §7.1) ({exc})"
        ) from exc
    except (EOFError, OSError, struct.error) as exc:
        raise BadMessage(f"file is truncated: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # pydicom raises assorted types for garbage; all mean "unreadable"
        raise BadMessage(f"unreadable DICOM header: {type(exc).__name__}: {exc}") from exc
    fault = _truncation(ds, fp.tell(), size)
    if fault is not None:
        raise BadMessage(fault)
    if len(ds) == 0:
        raise BadMessage("no data set after the File Meta Information: file truncated or empty")
    return ds


def read_instance(path: Path) -> InstanceHeader | None:
    """The header of one file; None for a DICOMDIR; BadMessage for anything unusable.

    Raises FileNotFoundError when the file vanished after listing (the caller skips it: a
    file moved away is not a bad message).
    """
    with path.open("rb") as fp:
        return read_header(fp, os.fstat(fp.fileno()).st_size)


def read_header(fp: BinaryIO, size: int) -> InstanceHeader | None:
    """As :func:`read_instance`, from an open binary stream of ``size`` bytes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = _parse(fp, size)
        media_class = str(ds.file_meta.get("MediaStorageSOPClassUID", "")).strip()
        if media_class == MEDIA_STORAGE_DIRECTORY:
            return None
        try:
            header = InstanceHeader.from_dataset(ds)
        except Exception as exc:  # a value pydicom cannot convert (bad charset, broken SQ)
            raise BadMessage(
                f"unreadable DICOM attribute value: {type(exc).__name__}: {exc}"
            ) from exc
    for warning in caught:
        log.debug("pydicom: %s", warning.message)
    fault = header.placement_fault()
    if fault is not None:
        raise fault
    return header
