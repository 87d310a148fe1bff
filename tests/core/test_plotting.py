"""Sample grids: layout, value mapping and the enlargement of small images."""

import numpy as np
from PIL import Image

from gankit import plotting


def test_grid_layout_values_and_default_enlargement(tmp_path):
    images = np.full((6, 1, 28, 28), -1.0, dtype=np.float32)
    images[1] = 1.0  # the second cell is white
    path = plotting.image_grid(tmp_path / "g.png", images)  # 3 columns x 2 rows, 2-px borders
    arr = np.asarray(Image.open(path))
    # 28-px images are doubled (nearest): (2 + 2 * 30) * 2 rows of pixels, (2 + 3 * 30) * 2 columns
    assert arr.shape == (2 * (2 + 2 * 30), 2 * (2 + 3 * 30))
    # each source pixel became a 2x2 block: the white cell spans rows 4..59, columns 64..119
    assert (arr[4:60, 64:120] == 255).all()
    assert arr[4:60, 4:60].max() == 0 and arr[60:64, 64:120].max() == 0


def test_grid_scale_is_explicit_or_one_for_large_images(tmp_path):
    small = plotting.image_grid(tmp_path / "s.png", np.zeros((4, 8, 8)), scale=1)
    assert Image.open(small).size == (2 + 2 * 10, 2 + 2 * 10)
    digits = plotting.image_grid(tmp_path / "d.png", np.zeros((4, 8, 8)))  # 8 px -> x7
    assert Image.open(digits).size == (7 * 22, 7 * 22)
    big = plotting.image_grid(tmp_path / "b.png", np.zeros((1, 3, 64, 64)))
    assert Image.open(big).size == (68, 68)
    assert Image.open(big).mode == "RGB"
