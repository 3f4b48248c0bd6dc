"""Pools of images: discover files, decode any mode to grayscale or RGB, resize, keep a stable order.

A :class:`Pool` is what every later step sees (:mod:`selector.pool.pool`). Two sources:

* a folder, searched recursively for image files (:mod:`selector.pool.listing`), decoded in worker
  processes under a time limit (:mod:`selector.pool.decode`, :mod:`selector.pool.workers`):
  :func:`load_folder` (:mod:`selector.pool.folder`);
* an ``.npz`` archive with an array ``x`` of images and an optional ``y`` of labels: :func:`load_npz`
  (:mod:`selector.pool.npz`).

:func:`load_pool` takes either. :func:`write_demo_pool` writes the built-in demo pool
(:mod:`selector.pool.demo`). Robustness (unreadable, hanging, huge or special files; links; memory) is
described in ``docs/robustness.md``.
"""
from __future__ import annotations

from .decode import DEFAULT_MAX_PIXELS, choose_size, convert_image, decode_file
from .demo import write_demo_pool
from .folder import decode_pool, load_folder, load_pool, scan_folder
from .listing import IMAGE_SUFFIXES, list_image_files, list_pool_files, open_regular
from .npz import images_from_array, load_npz, resize_images
from .pool import MMAP_THRESHOLD, Pool, PoolError, PoolFormat, alloc_images, duplicate_mask
from .workers import DEFAULT_DECODE_TIMEOUT_S

__all__ = ["DEFAULT_DECODE_TIMEOUT_S", "DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "MMAP_THRESHOLD", "alloc_images",
           "choose_size", "convert_image", "decode_file", "decode_pool", "duplicate_mask", "images_from_array",
           "list_image_files", "list_pool_files", "load_folder", "load_npz", "load_pool", "open_regular", "Pool",
           "PoolError", "PoolFormat", "resize_images", "scan_folder", "write_demo_pool"]
