"""Reading and writing array files: TIFF / OME-TIFF, NIfTI, .npy and PNG, with atomic output;
DICOM (a file or a series directory, see `tinc.dicom`), the other volume formats nibabel
reads (MGH/MGZ, MINC 1, Analyze, PAR/REC, AFNI) and Zarr are read only here.

The other readers and writers sit beside this module: `tinc.volume` reads inputs too big for
memory region by region, `tinc.ome_zarr` writes OME-Zarr groups, `tinc.zarr_store` reads
and writes chunked tinc stores."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from .axes import input_axes, nifti_extensions, nifti_header, nifti_metadata, spacing_for, spacing_of
from .errors import TincInputError, TincOutputError, first_line
from .rescale import rescaled
from .volume import Volume, is_zarr_path, open_zarr, region_kind, tiff_file_metadata

FORMATS = {".tif": "tiff", ".tiff": "tiff", ".nii": "nifti", ".nii.gz": "nifti", ".npy": "npy", ".png": "png"}
# read, never written: DICOM, and nibabel's other volumes, whose affine a NIfTI output keeps;
# a header and data pair is read from either file (nibabel finds the other)
INPUT_FORMATS = {**FORMATS, ".dcm": "dicom", ".mgh": "mgh", ".mgz": "mgh", ".mnc": "minc", ".hdr": "analyze",
                 ".img": "analyze", ".par": "par/rec", ".rec": "par/rec", ".head": "afni", ".brik": "afni",
                 ".brik.gz": "afni", ".v": "ecat"}

# `PREFIX:NAME` sample files shipped inside packages: (module whose folder holds them, the
# folder inside it, what to install).
_SAMPLE_FOLDERS = {
    "nilearn": ("nilearn", ("datasets", "data"), "pip install 'tinc[corpus]'"),
    "pydicom-data": ("data_store", ("data",), "pip install 'tinc[corpus]'"),
}


def format_of(path, reading: bool = False) -> str:
    """The format named by `path`'s extension: one tinc writes, or with `reading` one it reads."""
    formats = INPUT_FORMATS if reading else FORMATS
    name = Path(path).name.lower()
    for suffix in sorted(formats, key=len, reverse=True):
        if name.endswith(suffix):
            return formats[suffix]
    supported = ", ".join(sorted(formats)) + (", a DICOM series directory" if reading else "")
    raise TincInputError(f"{path}: unsupported format {''.join(Path(path).suffixes) or '(no extension)'!r} (supported: {supported})")


def resolve(path) -> str:
    """Paths, plus names of sample data shipped by packages: `nibabel:example4d.nii.gz`,
    `skimage:cell`, `nilearn:NAME` and `pydicom-data:NAME` (files bundled in those wheels;
    nothing is downloaded)."""
    path = str(path)
    prefix, _, name = path.partition(":")
    if prefix in _SAMPLE_FOLDERS and name:
        return _sample_file(path, prefix, name)
    if path.startswith("nibabel:"):
        from nibabel.testing import data_path

        return os.path.join(data_path, path.split(":", 1)[1])
    if path.startswith("skimage:"):
        import skimage.data

        name = path.split(":", 1)[1]
        loader = getattr(skimage.data, name, None)
        if loader is None or name.startswith("_"):
            raise TincInputError(f"{path}: scikit-image has no sample image {name!r}")
        try:
            image = np.asarray(loader())
        except Exception:  # images scikit-image would download are not available offline
            raise TincInputError(f"{path}: not bundled with scikit-image (it needs a download)") from None
        # a colour image goes to an RGB TIFF, whose samples are read as channels (as those of
        # the PNG in scikit-image's folder would be), by `tinc compress` and chunked compression
        # alike; anything else to .npy, exactly as loaded
        colour = image.ndim == 3 and image.shape[-1] in (3, 4) and image.dtype in (np.uint8, np.uint16)
        target = os.path.join(tempfile.gettempdir(), f"tinc-skimage-{name}.{'tif' if colour else 'npy'}")
        if not os.path.exists(target):  # written atomically: another process may be reading or writing it too
            with atomic_path(target) as temporary:
                if colour:
                    import tifffile

                    tifffile.imwrite(temporary, image, photometric="rgb")
                else:
                    np.save(temporary, image, allow_pickle=False)
        return target
    return path


def _sample_file(path: str, prefix: str, name: str) -> str:
    """The file `name` in the sample folder of package `prefix`, located without importing it."""
    module, folder, install = _SAMPLE_FOLDERS[prefix]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TincInputError(f"{path}: {prefix} is not installed ({install})")
    directory = os.path.join(list(spec.submodule_search_locations)[0], *folder)
    target = os.path.join(directory, name)
    # a plain file name only: no way out of the package's folder
    if os.path.basename(name) != name or name in (".", "..") or not os.path.isfile(target):
        raise TincInputError(f"{path}: {prefix} has no file {name!r} in {directory}")
    return target


def read_with_metadata(path) -> tuple[np.ndarray, dict]:
    """The array in `path` and what is needed to write it back alike (e.g. a NIfTI header,
    or a DICOM input's `spacing`: one distance per spatial axis)."""
    path = resolve(path)
    if is_zarr_path(path):
        return _read_zarr(path), {"format": "zarr"}
    if os.path.isdir(path):
        from .dicom import dicom_files

        if not dicom_files(path):
            raise TincInputError(f"{path}: is a directory, with no DICOM files in it")
        kind, reader = "dicom", _read_dicom_series
    else:
        try:
            kind = format_of(path, reading=True)
        except TincInputError:
            from .dicom import has_dicom_preamble

            if not has_dicom_preamble(path):  # DICOM files often have no extension at all
                raise
            kind = "dicom"
        if not os.path.exists(path):
            raise TincInputError(f"{path}: no such file")
        reader = _READERS[kind]
    try:
        array, metadata = reader(path)
    except TincInputError:
        raise
    except ModuleNotFoundError as error:  # e.g. MINC 2 files, which nibabel reads with h5py
        raise TincInputError(f"{path}: reading {kind} files like this one needs {error.name} (pip install {error.name})") from None
    except Exception as error:
        raise TincInputError(f"{path}: cannot read as {kind} ({first_line(error)})") from None
    metadata["format"] = kind
    return array, metadata


def _read_zarr(path) -> np.ndarray:
    """A whole Zarr array (or an OME-Zarr group's full-resolution level) in memory, for
    `tinc eval`; chunked compression reads Zarr chunk by chunk instead."""
    if not os.path.isdir(path):
        raise TincInputError(f"{path}: no such Zarr directory")
    try:
        array = np.asarray(open_zarr(path)[...])
        import zarr

        order = zarr.open(path, mode="r").attrs.get("tinc", {}).get("order")
        if isinstance(order, list) and sorted(order) == list(range(array.ndim)):
            # a tinc OME-Zarr output holds its axes in OME-Zarr's order: back to the input's
            array = np.transpose(array, np.argsort(order))
        return array
    except TincInputError:
        raise
    except Exception as error:
        raise TincInputError(f"{path}: cannot read as zarr ({first_line(error)})") from None


def _read_tiff(path):
    import tifffile

    with tifffile.TiffFile(path) as tiff:
        array = tiff.asarray()
        # samples fitted as channels, as a PNG's and a DICOM's are; the series axes (e.g.
        # TZYX, ZCYX) only where they say more than the shape, so most files gain no bytes
        return array, tiff_file_metadata(tiff, array.shape)


def _read_nibabel(path):
    """NIfTI, or any volume nibabel reads: scaled integers as their physical values (float32),
    others as stored; the header (another format's affine, in a NIfTI-1 header) kept for a
    NIfTI output."""
    import nibabel

    # nibabel.load leaves ECAT out of the formats it tries
    image = nibabel.ecat.load(path) if format_of(path, reading=True) == "ecat" else nibabel.load(path)
    proxy = image.dataobj
    if type(proxy) is nibabel.arrayproxy.ArrayProxy:  # NIfTI, MGH: one slope and intercept
        slope, inter = float(proxy.slope), float(proxy.inter)
        if (slope == 1 and inter == 0) or (proxy.dtype.kind in "iu" and slope.is_integer() and inter.is_integer()):
            array = rescaled(np.asarray(proxy.get_unscaled())[None], [slope], [inter])[0]  # integers stay integers
        else:
            array = np.asarray(proxy, dtype=np.float32)
    else:  # the format's own scaling (AFNI, PAR/REC, MINC): integers it scaled become float32
        array = np.asarray(proxy)
        stored = image.get_data_dtype(0) if isinstance(image, nibabel.ecat.EcatImage) else image.get_data_dtype()  # ECAT: per frame
        if array.dtype.kind == "f" and stored.kind != "f":
            array = array.astype(np.float32)
    if type(image) in (nibabel.Nifti1Image, nibabel.Nifti2Image):
        return array, nifti_metadata(image.header)
    if isinstance(image, nibabel.Cifti2Image):  # a NIfTI-2 file whose extension holds what its axes are
        return array, nifti_metadata(image.nifti_header)
    affine = getattr(image, "affine", None)
    if affine is None or array.ndim < 3:  # e.g. a CIFTI matrix: no grid to place in space
        return array, {}
    return array, {"nifti_header": nibabel.Nifti1Image(array, affine).header.binaryblock}


def _read_npy(path):
    return np.load(path, allow_pickle=False), {}


def _read_png(path):
    import imagecodecs

    with open(path, "rb") as handle:
        array = imagecodecs.png_decode(handle.read())
    return array, ({"channel_axis": -1} if array.ndim == 3 else {})


def _read_dicom(path):
    from .dicom import read_file

    return read_file(path)


def _read_dicom_series(path):
    from .dicom import read_series

    return read_series(path)


_READERS = {"tiff": _read_tiff, "npy": _read_npy, "png": _read_png, "dicom": _read_dicom,
            **dict.fromkeys(("nifti", "mgh", "minc", "analyze", "par/rec", "afni", "ecat"), _read_nibabel)}


@contextlib.contextmanager
def region_volume(source, beside, quiet: bool = False):
    """`source` opened for reading region by region (a `tinc.volume.Volume`). A format read
    only whole (NIfTI, DICOM, PNG, a sample name, ...) is read once here and staged as a
    hidden .npy beside the path `beside`, which every worker memory-maps; it is removed at
    the end, and its reader's channel axis (a colour DICOM's or PNG's samples) and metadata
    (a NIfTI header, a DICOM spacing) come along (`Volume.channel_axis`, `Volume.metadata`)."""
    path = resolve(source)
    if region_kind(path) is not None:
        yield Volume(path)
        return
    array, metadata = read_with_metadata(path)
    staged = Path(beside).parent / f".{Path(beside).name}.input.npy"
    if not quiet:
        print(f"tinc: note: {source} is read whole and staged as {staged} ({array.nbytes / 2**20:.0f} MiB) for the "
              "workers to read their chunks from; it is removed at the end", file=sys.stderr)
    try:
        with atomic_path(staged) as temporary:
            np.save(temporary, array, allow_pickle=False)
        del array
        volume = Volume(staged)
        volume.channel_axis = metadata.pop("channel_axis", None)
        volume.metadata = {k: v for k, v in metadata.items() if k != "format"}
        yield volume
    finally:
        with contextlib.suppress(OSError):
            os.remove(staged)


def native_dtype(dtype) -> np.dtype:
    """`dtype` in native byte order, as numpy's canonical type of its kind and size: tifffile
    reads int64 as C long long, a type of its own that Zarr does not recognise."""
    return np.dtype(np.dtype(dtype).newbyteorder("=").str)


def check_writable(path) -> None:
    """Fail before long work, not after it, when `path` cannot be written."""
    directory = Path(path).parent if str(Path(path).parent) else Path(".")
    if not directory.is_dir():
        raise TincInputError(f"{path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise TincInputError(f"{path}: directory {directory} is not writable")
    if Path(path).is_dir():
        raise TincInputError(f"{path}: is a directory")


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffix); move it into place only on success,
    after flushing it to disk, so a crash or power loss leaves the old file or the new one.
    An OSError on the way (disk full, permissions) is a one-line TincOutputError."""
    check_writable(path)
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    suffix = "".join(path.suffixes[-2:]) if path.name.lower().endswith(".nii.gz") else path.suffix
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}", dir=directory)
    except OSError as error:
        raise TincOutputError(f"{path}: cannot write ({error.strerror or error})") from None
    os.close(handle)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes owner-only files
        _fsync(temporary)
        os.replace(temporary, path)
        with contextlib.suppress(OSError):  # not every platform can sync a directory
            _fsync(directory)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, OSError) and not isinstance(error, TincOutputError):
            raise TincOutputError(f"{path}: cannot write ({error.strerror or error})") from None
        raise


def _fsync(path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_bytes(path, data: bytes) -> None:
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def write(path, array: np.ndarray, metadata: dict | None = None) -> None:
    """Write by extension; a NIfTI header in `metadata`, with its extensions, is kept when writing NIfTI, and
    without one a `spacing` (from a DICOM input) becomes the affine's diagonal."""
    kind = format_of(path)
    array = np.asarray(array)
    metadata = metadata or {}
    with atomic_path(path) as temporary:
        try:
            _WRITERS[kind](temporary, array, metadata)
        except (TincInputError, OSError):  # atomic_path names an OSError (disk full, permissions)
            raise
        except Exception as error:
            raise TincInputError(f"{path}: cannot write {kind} ({error})") from None


def memmap_output(path, kind: str, shape: tuple[int, ...], dtype, metadata: dict, bigtiff: bool | None = None) -> np.ndarray:
    """A new `.npy` or TIFF file (`kind`) at `path`, memory-mapped for writing region by region;
    the TIFF an OME-TIFF where `metadata` gives voxel sizes (`ome_tiff_options`)."""
    if kind == "npy":
        return np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    import tifffile

    return tifffile.memmap(path, shape=shape, dtype=dtype, bigtiff=bigtiff, **ome_tiff_options(shape, metadata))


def _write_tiff(path, array, metadata):
    import tifffile

    tifffile.imwrite(path, array, **ome_tiff_options(array.shape, metadata))


def ome_tiff_options(shape: tuple[int, ...], metadata: dict) -> dict:
    """An OME-TIFF's axes and voxel sizes, where the input gave sizes and its axes are a
    microscope's (time, channel, z, then y, x last): an OME-TIFF, ImageJ TIFF, OME-Zarr or
    DICOM input. Otherwise (a NIfTI's x, y, z; colour samples last; no sizes) a plain TIFF.
    `metadata["channel_axis"]`: the decoded array's channel axis, if any."""
    letters = input_axes(shape, metadata.get("channel_axis"), metadata)
    spacing = spacing_for(letters, metadata)
    if spacing is None or not letters.endswith("YX") or "Q" in letters:
        return {}
    sizes = {f"PhysicalSize{a}": s for a, s in zip(letters, spacing) if a in "ZYX"}
    return {"ome": True, "metadata": {"axes": letters, **sizes}}


def _write_nifti(path, array, metadata):
    import nibabel

    header = None
    if "nifti_header" in metadata:
        header = nifti_header(metadata["nifti_header"])
        stored = tuple(header.get_data_shape())
        if tuple(s for s in stored if s != 1) == tuple(s for s in array.shape if s != 1):
            array = array.reshape(stored)  # e.g. a CIFTI matrix, whose header holds it as 1x1x1x1xNxM
        else:
            header = None
    if header is None:
        # e.g. a DICOM input: its voxel spacing on the diagonal (axes in the array's order)
        affine = np.eye(4)
        spacing = spacing_of(metadata)
        if spacing is not None and len(spacing) <= min(3, array.ndim):
            affine[range(len(spacing)), range(len(spacing))] = spacing
        image = nibabel.Nifti1Image(array, affine)
    else:
        header.set_data_dtype(array.dtype)
        kind = nibabel.Nifti2Image if isinstance(header, nibabel.Nifti2Header) else nibabel.Nifti1Image
        image = kind(array, header.get_best_affine(), header)
        image.header.extensions.extend(nifti_extensions(metadata, header))
    nibabel.save(image, path)


def _write_npy(path, array, metadata):
    with open(path, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def check_fits_format(path, shape: tuple[int, ...], dtype) -> None:
    """Refuse, before any work, an array the format `path` names cannot hold (PNG: 2-D
    uint8 or uint16, grey or with up to 4 samples)."""
    ndim, dtype = len(shape), np.dtype(dtype)
    if format_of(path) == "png" and (dtype not in (np.uint8, np.uint16) or not (ndim == 2 or (ndim == 3 and shape[-1] in (1, 3, 4)))):
        raise TincInputError(f"{path}: PNG holds 2-D uint8/uint16 images, not {ndim}-D {dtype}; use .tif, .nii.gz or .npy")


def _write_png(path, array, metadata):
    import imagecodecs

    check_fits_format(path, array.shape, array.dtype)
    with open(path, "wb") as handle:
        handle.write(imagecodecs.png_encode(array))


_WRITERS = {"tiff": _write_tiff, "nifti": _write_nifti, "npy": _write_npy, "png": _write_png}
