"""Reading the user's images: a file or a folder of them, decoded to RGB uint8, refused when too large.

Why in the runtime: `ecmnet-predict`, `ecmnet-make-bag` and `ecmnet-bag-eval` (ecmnet_ros) read images
the same way, and none should import another's command-line module. Bad input raises ImageError
(a UserError: one `error:` line in the tools).

The size cap: the network's memory grows with the pixels it sees (about 0.5 GB per megapixel on CPU at
native resolution, `python benchmarks/input_memory.py`), so an 8000x8000 photo or a PNG that claims
100000x100000 would run a machine out of memory. The dimensions are read from the file header (Pillow
parses only the header until asked for pixels) and checked before any pixel buffer is allocated.
"""
from __future__ import annotations

import re
import struct
import warnings
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

from ..utils.errors import UserError
from ..utils.native_stderr import capture_native_stderr

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# 4096 x 2048 = 8.4 MP: every camera up to 4K UHD (3840x2160) fits; about 4.6 GB at 3840x2160 on CPU
DEFAULT_MAX_PIXELS = 4096 * 2048
# what libjpeg / libtiff say when they pad a cut-off file with grey instead of failing
_TRUNCATED = re.compile(r"premature end|truncat|unexpected end|not enough data", re.IGNORECASE)


class ImageError(UserError):
    """An image that cannot be read, or one larger than the pixel limit."""


class ImageTooLarge(ImageError):
    pass


def check_pixels(height: int, width: int, max_pixels: Optional[int], what: str,
                 limit_name: str = "--max-pixels", show_dims: bool = True) -> None:
    """Raise ImageTooLarge when height * width exceeds max_pixels (None or 0: no limit).

    show_dims=False for a `what` that already names the size (e.g. "--size 100000x100000").
    """
    pixels = int(height) * int(width)
    if max_pixels and pixels > max_pixels:
        size = f"{int(width)}x{int(height)} ({pixels:,} pixels)" if show_dims else f"{pixels:,} pixels"
        raise ImageTooLarge(f"{what} is {size}, more than the limit of {int(max_pixels):,} ({limit_name})")


def header_size(source, what: str = "image", max_pixels: Optional[int] = None,
                limit_name: str = "--max-pixels") -> Tuple[int, int]:
    """(height, width) from an image's header, without decoding its pixels, checked against max_pixels.

    source: a path or a binary file-like object. Raises ImageError (ImageTooLarge over the limit).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # DecompressionBombWarning: the size is judged below
            with Image.open(source) as im:
                width, height = im.size
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ImageError(f"cannot read {what}: {exc.strerror}") from None
    except Image.DecompressionBombError as exc:
        declared = re.search(r"\((\d+) pixels\)", str(exc))
        declared = f"{int(declared.group(1)):,} pixels" if declared else "more pixels than Pillow reads"
        limit = (f"the limit of {int(max_pixels):,} ({limit_name})" if max_pixels else
                 f"Pillow's decompression-bomb limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,}")
        raise ImageTooLarge(f"{what} declares {declared}, more than {limit}") from None
    except UnidentifiedImageError:
        raise ImageError(f"cannot decode {what}: not a known image format, or its header is corrupt") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        reason = _first_line(exc) or type(exc).__name__
        raise ImageError(f"cannot decode {what}: corrupt image header ({reason})") from None
    if width <= 0 or height <= 0:
        raise ImageError(f"cannot decode {what}: its header says {width}x{height}")
    check_pixels(height, width, max_pixels, what, limit_name)
    return int(height), int(width)


def _first_line(exc) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return text if len(text) <= 160 else text[:157] + "..."


def decode(data, what: str, flags: int = cv2.IMREAD_COLOR, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
           limit_name: str = "--max-pixels", quiet: bool = True) -> np.ndarray:
    """Encoded bytes (PNG, JPEG, ...) -> the array cv2.imdecode gives (BGR for IMREAD_COLOR).

    The header is checked against max_pixels first. quiet=True captures what the C decoders print
    (single-threaded tools only, see utils/native_stderr.py) and treats their truncation warnings
    as failures; the node passes quiet=False.
    """
    import io

    buf = np.frombuffer(data, dtype=np.uint8) if len(data) else np.zeros(0, np.uint8)
    if buf.size == 0:
        raise ImageError(f"cannot decode {what}: no data (0 bytes)")
    header_size(io.BytesIO(buf), what, max_pixels, limit_name)     # BytesIO copies: compressed bytes, small
    if quiet:
        with capture_native_stderr() as native:
            img = cv2.imdecode(buf, flags)
        said = " ".join(native.text.split())
    else:
        img, said = cv2.imdecode(buf, flags), ""
    if img is None or img.size == 0:
        raise ImageError(f"cannot decode {what}: corrupt or truncated data" + (f" ({said})" if said else ""))
    if _TRUNCATED.search(said):
        raise ImageError(f"cannot decode {what}: corrupt or truncated data ({said})")
    return img


def list_images(target: Path):
    target = Path(target)
    if target.is_dir():
        # regular files only: a FIFO or device named x.png would block or never end
        files = sorted(p for p in target.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        if not files:
            raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTS))}) in {target}")
        return files
    if target.is_file():
        return [target]
    if target.exists():
        raise UserError(f"{target} is not a regular file or a directory")
    raise UserError(f"no such image or directory: {target}")


def read_image(path: Path, flags: int = cv2.IMREAD_COLOR, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
               limit_name: str = "--max-pixels") -> np.ndarray:
    """A file decoded as cv2.imread would, after its header passed the size check."""
    path = Path(path)
    what = f"image {path}"
    header_size(path, what, max_pixels, limit_name)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ImageError(f"cannot read {what}: {exc.strerror or exc}") from None
    return decode(data, what, flags, max_pixels, limit_name)


def read_rgb(path: Path, max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
             limit_name: str = "--max-pixels") -> np.ndarray:
    img = read_image(path, cv2.IMREAD_COLOR, max_pixels, limit_name)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
