"""Image files (JPEG/PNG): bytes kept as stored, checked by a decode.

A record keeps the original bytes (no re-encoding, no quality loss); the
decode here only proves the file is whole, and measures it.
"""

import dataclasses
import io
import os

import numpy as np
from PIL import Image

from tfrecords_tools.items import BadInput

FORMATS = {"JPEG": "jpeg", "PNG": "png"}


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """What a full decode found: `(height, width)`, channels and format."""

    height: int
    width: int
    channels: int
    format: str


def read_image(path: str) -> tuple:
    """Reads an image file and checks that it decodes completely.

    Args:
        path: a JPEG or PNG file.

    Returns:
        `(data, info)`: the file's bytes and an `ImageInfo`.

    Raises:
        BadInput: missing, empty, truncated, corrupt or of another format.

    Example:

    >>> data, info = read_image("train_images/0002cc93b.jpg")  # doctest: +SKIP
    >>> (info.height, info.width, info.channels, info.format)  # doctest: +SKIP
    (256, 1600, 3, 'jpeg')
    """
    if not os.path.isfile(path):
        raise BadInput(path, "image file not found")
    with open(path, "rb") as f:
        data = f.read()
    return data, check_image(data, path)


def check_image(data: bytes, path: str) -> ImageInfo:
    """Decodes `data` fully; raises `BadInput` naming `path` if it fails."""
    if not data:
        raise BadInput(path, "empty image file")
    try:
        with Image.open(io.BytesIO(data)) as im:
            fmt = FORMATS.get(im.format)
            if fmt is None:
                raise BadInput(path, f"unsupported image format "
                                     f"{im.format!r} (JPEG or PNG)")
            info = ImageInfo(im.height, im.width, len(im.getbands()), fmt)
            if fmt == "jpeg":
                # Decode at 1/8 scale: every entropy-coded byte is still
                # read (truncation and corruption still fail), the inverse
                # DCT is 8x cheaper.
                im.draft(im.mode, (max(im.width // 8, 1),
                                   max(im.height // 8, 1)))
            im.load()
            return info
    except BadInput:
        raise
    except Exception as e:  # PIL raises many types for broken files.
        raise BadInput(path, f"corrupt or truncated image: {e}") from None


def decode_array(data: bytes, path: str = "<bytes>") -> np.ndarray:
    """Decoded pixels, `(height, width)` or `(height, width, channels)`."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im)
    except Exception as e:
        raise BadInput(path, f"corrupt or truncated image: {e}") from None
