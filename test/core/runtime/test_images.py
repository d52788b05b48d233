"""Image reading: the size cap is checked in the header before any decoding, and what C decoders
print (libjpeg's "Premature end of JPEG file") never reaches the user's terminal."""
import io
import os

import cv2
import numpy as np
import pytest

from ecmnet_core.runtime import images
from ecmnet_core.runtime.images import (DEFAULT_MAX_PIXELS, ImageError, ImageTooLarge, decode, header_size,
                                        read_rgb)
from ecmnet_core.utils.native_stderr import capture_native_stderr


def test_default_cap_admits_4k_uhd_and_refuses_8000x8000():
    assert 2160 * 3840 <= DEFAULT_MAX_PIXELS < 8000 * 8000


@pytest.mark.parametrize("name", ["png_claims_100000x100000", "png_claims_20000x20000", "real_8000x8000"])
def test_oversize_images_are_refused_before_the_decoder_runs(name, hostile_images, monkeypatch):
    calls = []
    monkeypatch.setattr(images.cv2, "imdecode", lambda *a: calls.append(a))
    path, match = hostile_images[name]
    with pytest.raises(ImageTooLarge, match="more than the limit"):
        read_rgb(path)
    with pytest.raises(ImageTooLarge):
        decode(path.read_bytes(), "frame")
    assert calls == []


def test_header_size_reads_dimensions_without_pixels(hostile_images):
    assert header_size(hostile_images["_good"][0]) == (48, 64)
    assert header_size(io.BytesIO(hostile_images["real_8000x8000"][0].read_bytes()), max_pixels=None) == (8000, 8000)
    # without a cap of ours, Pillow's own decompression-bomb limit (179 MP) still refuses the header
    with pytest.raises(ImageTooLarge, match="declares 400,000,000 pixels, more than Pillow's"):
        header_size(hostile_images["png_claims_20000x20000"][0], max_pixels=None)


def test_raised_cap_and_no_cap_let_a_big_image_through(hostile_images):
    path, _ = hostile_images["real_8000x8000"]
    assert read_rgb(path, max_pixels=8000 * 8000).shape == (8000, 8000, 3)


@pytest.mark.parametrize("name", ["truncated_png", "truncated_jpeg", "random_bytes", "empty_file"])
def test_undecodable_files_are_image_errors_and_print_nothing(name, hostile_images, capfd):
    path, match = hostile_images[name]
    with pytest.raises(ImageError, match=match):
        read_rgb(path)
    assert capfd.readouterr().err == ""


def test_truncation_warning_from_the_decoder_is_a_failure(hostile_images, monkeypatch, capfd):
    """OpenCV builds whose libjpeg pads a cut-off file with grey say so on fd 2 and return an image:
    that text (captured, not shown) makes it a bad image."""
    good = cv2.imdecode(np.fromfile(hostile_images["_good"][0], np.uint8), cv2.IMREAD_COLOR)

    def padding_decoder(buf, flags):
        os.write(2, b"Premature end of JPEG file\n")
        return good
    monkeypatch.setattr(images.cv2, "imdecode", padding_decoder)
    with pytest.raises(ImageError, match=r"corrupt or truncated data \(Premature end of JPEG file\)"):
        read_rgb(hostile_images["_good"][0])
    assert capfd.readouterr().err == ""


def test_capture_native_stderr_restores_fd_2(capfd):
    with capture_native_stderr() as captured:
        os.write(2, b"from C\n")
    os.write(2, b"after\n")
    assert captured.text == "from C\n"
    assert capfd.readouterr().err == "after\n"


def test_good_images_decode_as_imread_does(hostile_images):
    for path in (hostile_images["_good"][0], hostile_images["_good"][0].with_suffix(".jpg")):
        expected = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(read_rgb(path), expected)
