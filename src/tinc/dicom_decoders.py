"""A pydicom decoding plugin built on imagecodecs, already a dependency of tinc.

Pydicom decodes JPEG baseline and JPEG 2000 through Pillow; JPEG lossless, JPEG extended,
JPEG-LS and HTJ2K it would decode only with extra packages (pylibjpeg-libjpeg is GPL-3.0,
gdcm is large). `register_decoders` adds this module as a plugin for those syntaxes, and
for JPEG 2000 as a fallback where Pillow fails.
"""

from __future__ import annotations

import numpy as np

_PLUGIN = "tinc-imagecodecs"
_registered = False

# What pydicom asks of a decoding plugin module: DECODER_DEPENDENCIES, is_available(uid),
# and a function decoding one frame into bytes.
_PLUGIN_SYNTAXES = {
    "1.2.840.10008.1.2.4.51": "jpeg",  # JPEG extended (12-bit)
    "1.2.840.10008.1.2.4.57": "jpeg",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "jpeg",  # JPEG lossless, first-order prediction
    "1.2.840.10008.1.2.4.80": "jpegls",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "jpegls",  # JPEG-LS near-lossless
    # JPEG 2000 lossless and lossy: Pillow's decoder comes first and this one only where it
    # fails (it refuses some valid files, e.g. pydicom's GDCMJ2K_TextGBR.dcm, which OpenJPEG
    # through imagecodecs decodes)
    "1.2.840.10008.1.2.4.90": "jpeg2k",
    "1.2.840.10008.1.2.4.91": "jpeg2k",
    "1.2.840.10008.1.2.4.201": "jpeg2k",  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": "jpeg2k",  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": "jpeg2k",  # HTJ2K
}
DECODER_DEPENDENCIES = {syntax: ("imagecodecs",) for syntax in _PLUGIN_SYNTAXES}


def _codec(kind: str):
    import imagecodecs

    return {"jpeg": imagecodecs.JPEG8, "jpegls": imagecodecs.JPEGLS, "jpeg2k": imagecodecs.JPEG2K}[kind]


def is_available(uid: str) -> bool:
    """pydicom's question to a plugin: can it decode transfer syntax `uid` here."""
    kind = _PLUGIN_SYNTAXES.get(str(uid))
    try:
        return kind is not None and bool(_codec(kind).available)
    except (ImportError, AttributeError):
        return False


def decode_frame(src: bytes, runner) -> bytes:
    """One encoded frame as little-endian, colour-by-pixel bytes, for pydicom."""
    import imagecodecs
    from pydicom.pixels.common import PhotometricInterpretation as PI

    kind = _PLUGIN_SYNTAXES[str(runner.transfer_syntax)]
    photometric = runner.photometric_interpretation
    if kind == "jpeg" and runner.samples_per_pixel == 3:
        # keep the stored components; pydicom converts them as PhotometricInterpretation says
        space = "ycbcr" if str(photometric).startswith("YBR") else "rgb"
        array = imagecodecs.jpeg8_decode(src, colorspace=space, outcolorspace=space)
    else:
        array = {"jpeg": imagecodecs.jpeg_decode, "jpegls": imagecodecs.jpegls_decode,
                 "jpeg2k": imagecodecs.jpeg2k_decode}[kind](src)
    array = np.asarray(array)
    runner.set_option("planar_configuration", 0)  # imagecodecs returns samples last
    runner.set_option("bits_allocated", array.dtype.itemsize * 8)  # its container, from the codestream's precision
    if kind == "jpeg2k" and photometric in (PI.YBR_ICT, PI.YBR_RCT):
        runner.set_option("photometric_interpretation", PI.RGB)  # OpenJPEG undoes the component transform
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def register_decoders() -> None:
    """Add the imagecodecs plugin, last, to pydicom's decoders of the syntaxes it covers:
    pydicom tries it only when the plugins it ships are missing or fail."""
    global _registered
    if _registered:
        return
    _registered = True
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    for syntax in _PLUGIN_SYNTAXES:
        try:
            get_decoder(UID(syntax)).add_plugin(_PLUGIN, ("tinc.dicom_decoders", "decode_frame"))
        except (ValueError, NotImplementedError, ImportError):  # already there, or nothing to add it to
            pass
