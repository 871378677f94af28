"""DICOM input through pydicom: single- and multi-frame `.dcm` files, and a directory holding
one series, read as a volume ordered by slice position.

Arrays keep the stored integer dtype unless a rescale (RescaleSlope / RescaleIntercept) is
not the identity: then the physical values, integers where the rescale maps integers to
integers (a CT's Hounsfield units: the stored width, signed where they go negative), float32
otherwise; a Modality LUT Sequence (a rescale as a table)
gives its own dtype; a palette-colour image is the RGB it shows, not its indices. The metadata
holds `spacing`: one distance per spatial axis (slice, row, column), when the files give it.

Compressed transfer syntaxes go through pydicom's decoders, with `tinc.dicom_decoders`'
plugin for those pydicom alone would not decode here.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from .dicom_decoders import register_decoders
from .errors import TincInputError, first_line
from .rescale import physical_dtype, rescaled

# ---------------------------------------------------------------------- finding files
def has_dicom_preamble(path) -> bool:
    """Whether `path` is a file with the `DICM` marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def dicom_files(directory) -> list[str]:
    """The DICOM files directly in `directory` (ending in .dcm, or with the DICM marker),
    sorted by name; hidden files and subdirectories are not looked at."""
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    found = []
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        if name.lower().endswith(".dcm") or has_dicom_preamble(path):
            found.append(path)
    return found


# ---------------------------------------------------------------------- one file
def read_file(path) -> tuple[np.ndarray, dict]:
    """A single- or multi-frame DICOM file: (frames,) rows, columns (, samples)."""
    dataset = _dcmread(path)
    if not _has_pixels(dataset):
        raise TincInputError(f"{path}: DICOM file without pixel data")
    array = _pixels(path, dataset)
    frames = _frame_count(dataset)
    slopes, intercepts = _frame_rescale(dataset, frames)
    array = rescaled(array if frames > 1 else array[None], slopes, intercepts)
    if frames == 1:
        array = array[0]
    metadata: dict = {}
    pixel = _pixel_spacing(dataset)
    if pixel is not None:
        if frames == 1:
            metadata["spacing"] = pixel
        else:
            between = _frame_spacing(dataset)
            if between is not None:
                metadata["spacing"] = (between, *pixel)
    if _samples(dataset) > 1:
        metadata["channel_axis"] = -1
    return array, metadata


# ---------------------------------------------------------------------- a series
def read_series(directory) -> tuple[np.ndarray, dict]:
    """The one DICOM series in `directory` as a volume (slices, rows, columns (, samples)),
    slices in order of position along the slice normal, else of InstanceNumber."""
    headers = []
    for path in dicom_files(directory):
        dataset = _in_file(path, _dcmread, path, stop_before_pixels=True)
        if "Rows" in dataset and "Columns" in dataset:  # images only: not a DICOMDIR, report, ...
            headers.append((path, dataset))
    if not headers:
        raise TincInputError(f"{directory}: no DICOM images in the directory (subdirectories are not searched)")
    series = sorted({str(d.get("SeriesInstanceUID", "")) for _, d in headers})
    if len(series) > 1:
        shown = ", ".join(uid or "(none)" for uid in series[:3]) + (", ..." if len(series) > 3 else "")
        raise TincInputError(f"{directory}: holds {len(series)} DICOM series (SeriesInstanceUID {shown}); "
                             "put each series in its own directory")
    if len(headers) == 1:
        return read_file(headers[0][0])
    for path, dataset in headers:
        if _frame_count(dataset) > 1:
            raise TincInputError(f"{directory}: {os.path.basename(path)} is a multi-frame file in a series "
                                 "of several files; read it on its own")
    shapes: dict[tuple, int] = {}
    for _, dataset in headers:
        shape = (int(dataset.Rows), int(dataset.Columns)) + ((_samples(dataset),) if _samples(dataset) > 1 else ())
        shapes[shape] = shapes.get(shape, 0) + 1
    if len(shapes) > 1:
        counts = ", ".join(f"{n} of {'x'.join(map(str, s))}" for s, n in sorted(shapes.items(), key=lambda i: -i[1]))
        raise TincInputError(f"{directory}: slices of different shapes in one series ({counts})")
    headers, between = _ordered(directory, headers)

    slopes, intercepts = zip(*(_rescale(d) if _rescale_applies(d) else (1.0, 0.0) for _, d in headers))
    volume = None
    scaled = any(s != 1 or i != 0 for s, i in zip(slopes, intercepts))
    # integer rescales are filled as wide integers and narrowed at the end, when the range is known
    integral = scaled and all(float(v).is_integer() for v in (*slopes, *intercepts))
    small = all(abs(v) <= 1 << 15 for v in (*slopes, *intercepts))
    for index, (path, _) in enumerate(headers):
        dataset = _in_file(path, _dcmread, path)
        if not _has_pixels(dataset):
            raise TincInputError(f"{path}: DICOM file without pixel data")
        plane = _in_file(path, _pixels, path, dataset)
        if volume is None:
            integral = integral and plane.dtype.kind in "iu"
            stored = plane.dtype
            wide = np.int32 if stored.itemsize <= 2 and small else np.int64  # 16-bit values rescaled fit in int32
            volume = np.empty((len(headers), *plane.shape), wide if integral else np.float32 if scaled else plane.dtype)
        if plane.shape != volume.shape[1:]:  # the header said otherwise
            raise TincInputError(f"{path}: pixel data of shape {plane.shape}, not {volume.shape[1:]} as the other slices")
        if not scaled and not np.can_cast(plane.dtype, volume.dtype, "safe"):  # e.g. signed among unsigned
            raise TincInputError(f"{path}: pixel type {plane.dtype}, not {volume.dtype} as the other slices")
        volume[index] = rescaled(plane[None], slopes[index:index + 1], intercepts[index:index + 1])[0]
    if integral:
        volume = volume.astype(physical_dtype(stored, slopes, intercepts, float(volume.min()), float(volume.max())))
    metadata: dict = {}
    pixel = _pixel_spacing(headers[0][1])
    if pixel is not None and between is not None:
        metadata["spacing"] = (between, *pixel)
    if _samples(headers[0][1]) > 1:
        metadata["channel_axis"] = -1
    return volume, metadata


def _ordered(directory, headers: list) -> tuple[list, float | None]:
    """The slices sorted along the normal of their planes (ImagePositionPatient projected on
    the cross product of ImageOrientationPatient's row and column directions), else by
    InstanceNumber, else by file name; and the distance between slices where known."""
    orientations = [d.get("ImageOrientationPatient") for _, d in headers]
    positions = [d.get("ImagePositionPatient") for _, d in headers]
    if all(o is not None and len(o) == 6 for o in orientations) and all(p is not None and len(p) == 3 for p in positions):
        orientation = np.array(orientations, float)
        if np.abs(orientation - orientation[0]).max() > 1e-3:
            raise TincInputError(f"{directory}: slices of different orientations in one series")
        normal = np.cross(orientation[0, :3], orientation[0, 3:])
        along = np.array(positions, float) @ normal
        order = np.argsort(along, kind="stable")
        steps = np.diff(along[order])
        if np.any(steps < 1e-4):  # stacking them would not be a volume
            shared = int(np.sum(steps < 1e-4)) + 1
            raise TincInputError(f"{directory}: {shared} slices share a position (several acquisitions in one series?)")
        return [headers[i] for i in order], float(np.median(steps))
    between = _spacing_between(headers[0][1])
    numbers = [d.get("InstanceNumber") for _, d in headers]
    if all(n is not None for n in numbers) and len({int(n) for n in numbers}) == len(numbers):
        return [h for _, h in sorted(zip([int(n) for n in numbers], headers), key=lambda pair: pair[0])], between
    return headers, between  # by file name: nothing better to go on


def _in_file(path, function, *args, **kwargs):
    """`function(*args, **kwargs)`, its failure a one-line error naming the file of a series."""
    try:
        return function(*args, **kwargs)
    except TincInputError:
        raise
    except Exception as error:
        raise TincInputError(f"{path}: cannot read as dicom ({first_line(error)})") from None


# ---------------------------------------------------------------------- pixels
def _dcmread(path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return _with_transfer_syntax(_warned_read(path, stop_before_pixels=stop_before_pixels))
    except InvalidDicomError:
        pass
    # Files written without the 128-byte preamble and file meta (ACR-NEMA style) still read
    # with force; only accept what then looks like an image, not any file at all.
    try:
        dataset = _warned_read(path, stop_before_pixels=stop_before_pixels, force=True)
        if "Rows" not in dataset or "Columns" not in dataset:
            raise ValueError
    except TincInputError:
        raise
    except Exception:
        raise TincInputError(f"{path}: not a DICOM file (no DICM marker, and no image in it)") from None
    return _with_transfer_syntax(dataset)


def _with_transfer_syntax(dataset):
    """`dataset`, its file meta given the transfer syntax its elements were read in where it
    names none (files without file meta, or with one that lacks (0002,0010)): pydicom decodes
    no pixels without it, and uncompressed pixels are in the dataset's own encoding."""
    if "TransferSyntaxUID" not in dataset.file_meta and dataset.original_encoding[1] is not None:
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = dataset.original_encoding
        dataset.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian) if little \
            else ExplicitVRBigEndian
    return dataset


def _warned_read(path, **options):
    """pydicom's dataset; a file that ends inside an element is an error here, where pydicom
    warns and drops the element (a cut file's encapsulated pixel data would read as absent)."""
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = pydicom.dcmread(path, **options)
    for warning in caught:
        if "End of file reached" in str(warning.message):
            raise TincInputError(f"{path}: truncated DICOM file (it ends inside an element)")
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return dataset


def _has_pixels(dataset) -> bool:
    return any(tag in dataset for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _pixels(path, dataset) -> np.ndarray:
    """The values decoded, through the colour table or Modality LUT Sequence where the file
    has one; a one-line error names a transfer syntax nothing here decodes."""
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is not None and syntax.is_compressed:
        register_decoders()
        from pydicom.pixels import get_decoder

        try:
            decoder = get_decoder(syntax)
        except NotImplementedError:
            decoder = None
        if decoder is None or not decoder.is_available:
            need = "; ".join(decoder.missing_dependencies) if decoder is not None else "pydicom has no decoder for it"
            raise TincInputError(f"{path}: cannot decode DICOM transfer syntax {syntax.name!r} ({syntax}): {need}")
    pixels = np.asarray(dataset.pixel_array)
    if _palette(dataset):
        # the stored values index a colour table: a lossy codec that moves an index by one
        # shows another colour, so the image is read as the RGB it displays
        from pydicom.pixels import apply_color_lut

        pixels = np.asarray(apply_color_lut(pixels, dataset))
    elif _modality_table(dataset):
        from pydicom.pixels import apply_modality_lut  # a rescale as a table (the two are exclusive)

        pixels = np.asarray(apply_modality_lut(pixels, dataset))
    return pixels


def _palette(dataset) -> bool:
    return str(dataset.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR"


def _frame_count(dataset) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _samples(dataset) -> int:
    """Channels per pixel as read: a palette image's three (`_pixels`)."""
    return 3 if _palette(dataset) else int(dataset.get("SamplesPerPixel", 1) or 1)


def _rescale(dataset) -> tuple[float, float]:
    # a table was applied by `_pixels` instead (the standard allows one of the two)
    slope, intercept = (None, None) if _modality_table(dataset) else (dataset.get("RescaleSlope"), dataset.get("RescaleIntercept"))
    return float(1 if slope is None or slope == "" else slope), float(0 if intercept is None or intercept == "" else intercept)


# MR Image Storage: its IOD has no Modality LUT, so a RescaleSlope there is a vendor's
# display scale of arbitrary units (e.g. pydicom-data's MR2_UNCI.dcm: 3.774114), not a
# physical value; the stored integers are the data. (Enhanced MR has real rescales, in its
# functional groups.)
_NO_MODALITY_LUT = {"1.2.840.10008.5.1.4.1.1.4"}


def _rescale_applies(dataset) -> bool:
    return str(dataset.get("SOPClassUID", "")) not in _NO_MODALITY_LUT


def _modality_table(dataset) -> bool:
    """Whether the stored values go through a Modality LUT Sequence: a rescale as a table."""
    return "ModalityLUTSequence" in dataset and _rescale_applies(dataset)


def _frame_rescale(dataset, frames: int) -> tuple[list[float], list[float]]:
    """Slope and intercept per frame: the file's own, else the enhanced multi-frame
    functional groups' (shared by every frame, or one per frame)."""
    if not _rescale_applies(dataset):
        return [1.0] * frames, [0.0] * frames
    if "RescaleSlope" in dataset or "RescaleIntercept" in dataset:
        slope, intercept = _rescale(dataset)
        return [slope] * frames, [intercept] * frames
    shared = _group(dataset.get("SharedFunctionalGroupsSequence"), 0, "PixelValueTransformationSequence")
    if shared is not None:
        slope, intercept = _rescale(shared)
        return [slope] * frames, [intercept] * frames
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    values = [_group(per_frame, i, "PixelValueTransformationSequence") for i in range(frames)]
    pairs = [(1.0, 0.0) if v is None else _rescale(v) for v in values]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _group(sequence, index: int, name: str):
    """Item 0 of sequence `name` in item `index` of a functional groups sequence, or None."""
    if sequence is None or len(sequence) <= index:
        return None
    inner = sequence[index].get(name)
    return inner[0] if inner is not None and len(inner) else None


# ---------------------------------------------------------------------- spacing
def _pixel_spacing(dataset) -> tuple[float, float] | None:
    """(between rows, between columns): PixelSpacing, else the functional groups', else the
    detector's ImagerPixelSpacing (radiographs)."""
    measures = _group(dataset.get("SharedFunctionalGroupsSequence"), 0, "PixelMeasuresSequence")
    for source in (dataset, measures):
        if source is not None and source.get("PixelSpacing") is not None:
            return _positive(source.PixelSpacing, 2)
    if dataset.get("ImagerPixelSpacing") is not None:
        return _positive(dataset.ImagerPixelSpacing, 2)
    return None


def _spacing_between(dataset) -> float | None:
    measures = _group(dataset.get("SharedFunctionalGroupsSequence"), 0, "PixelMeasuresSequence")
    for source in (dataset, measures):
        if source is not None and source.get("SpacingBetweenSlices") is not None:
            value = _positive([source.SpacingBetweenSlices], 1)
            return None if value is None else value[0]
    return None


def _frame_spacing(dataset) -> float | None:
    """Distance between the frames of a multi-frame file: from their positions when they lie
    in order along the slice normal, else SpacingBetweenSlices."""
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    frames = _frame_count(dataset)
    orientation = _group(dataset.get("SharedFunctionalGroupsSequence"), 0, "PlaneOrientationSequence")
    if orientation is None:
        orientation = _group(per_frame, 0, "PlaneOrientationSequence")
    positions = [_group(per_frame, i, "PlanePositionSequence") for i in range(frames)]
    if orientation is not None and orientation.get("ImageOrientationPatient") is not None \
            and all(p is not None and p.get("ImagePositionPatient") is not None for p in positions):
        cosines = np.array(orientation.ImageOrientationPatient, float)
        along = np.array([p.ImagePositionPatient for p in positions], float) @ np.cross(cosines[:3], cosines[3:])
        steps = np.diff(along)
        if len(steps) and (np.all(steps > 1e-4) or np.all(steps < -1e-4)):
            return float(np.median(np.abs(steps)))
    return _spacing_between(dataset)


def _positive(values, count: int) -> tuple[float, ...] | None:
    try:
        numbers = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return None
    if len(numbers) != count or not all(np.isfinite(n) and n > 0 for n in numbers):
        return None
    return numbers
