"""A pool of one image: the pixel view (PCA of the pixels) cannot be fitted on it, and the error says how to
leave it out; without it the pool is selected from."""
from __future__ import annotations

import numpy as np
from PIL import Image

from tests.conftest import error_line, run


def test_the_pixel_view_error_of_a_one_image_pool_names_the_option_that_leaves_it_out(tmp_path):
    pool = tmp_path / "pool"
    pool.mkdir()
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(pool / "a.png")
    r = run("select", "-b", 1, "-p", pool, "-o", tmp_path / "s.csv", "-q", "--workers", 0)
    assert r.exit_code == 1
    assert error_line(r).endswith("the pixel view (PCA of the pixels) needs at least 2 images, got 1; leave it out "
                                  "with --no-pixel-view (pixel_view=False)")
    r = run("select", "-b", 1, "-p", pool, "-o", tmp_path / "s.csv", "-q", "--workers", 0, "--no-pixel-view")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "s.csv").read_text().splitlines()[1].split(",")[1] == "a.png"
