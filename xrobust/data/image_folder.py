"""Load a folder of images with one subfolder per class (PNG, JPEG and other Pillow formats)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xrobust.data._base import SizeArg, _array_bundle, _check_bytes, _check_size, _existing
from xrobust.data.spec import DatasetBundle
from xrobust.errors import ConfigError, DataError

__all__ = ["IMAGE_SUFFIXES", "load_image_folder"]

#: File suffixes read as images (case-insensitive); other files are skipped with a warning.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_GREY = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def _hidden(p: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in p.relative_to(root).parts)


def _read(f: Path, channels: int | None) -> np.ndarray:
    """One image as float32 (C, H, W) in [0, 1]; C is 1 or 3 (alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            w, h = im.size  # from the header: refuse before decoding (float64 x 3 channels)
            _check_bytes(24 * w * h, str(f), f"decoding a {w}x{h} image")
            im.load()
            mode = im.mode
            grey = mode in _GREY if channels is None else channels == 1
            if grey and mode.startswith("I"):
                # 16-bit grey (PNG "I;16", or "I" in some Pillow versions): full scale 65535
                a = np.asarray(im, dtype=np.float64) / 65535.0
            elif grey and mode == "F":
                a = np.asarray(im, dtype=np.float64)
                if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
                    raise DataError(f"{f}: float image values outside [0, 1]")
            elif grey:
                a = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
            else:
                a = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
    except DataError:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as exc:
        raise DataError(f"{f}: unreadable image ({exc}); expected a PNG or JPEG file") from exc
    a = a[None] if a.ndim == 2 else np.moveaxis(a, 2, 0)
    return np.clip(a, 0.0, 1.0).astype(np.float32)


def load_image_folder(
    path: str | os.PathLike[str],
    *,
    size: SizeArg = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    channels: int | None = None,
    name: str | None = None,
) -> DatasetBundle:
    """Load images from ``path/<class name>/*.png|jpg|...`` (subfolders searched too).

    Classes are the subfolder names in sorted order. Images are read with Pillow into
    [0, 1]; grey-scale images give one channel and colour ones three (alpha dropped); when
    a folder mixes both, all are served as RGB. All images must have the same size unless
    ``size`` resizes them (bilinear, antialiased when shrinking). The split is stratified
    and seeded.

    Args:
        path: the root folder.
        size: resize every image to this side (or (H, W)); None requires equal sizes.
        test_fraction: share of images in the test set.
        seed: seed of the split.
        channels: force 1 (grey) or 3 (RGB) channels; None decides from the images.
        name: the spec's name (the folder name by default).

    Raises:
        DataError: no class folders, a class folder without images, an unreadable image,
            images of different sizes without ``size``.

    Example:
        >>> from xrobust.data import load_image_folder
        >>> ds = load_image_folder("photos/", size=64)  # doctest: +SKIP
        >>> ds.spec.class_names  # doctest: +SKIP
        ('cat', 'dog')
    """
    p = _existing(path, "a folder with one subfolder of images per class")
    if not p.is_dir():
        raise DataError(f"{p}: is a file; expected a folder with one subfolder per class")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be None, 1 or 3, got {channels!r}")
    hw = _check_size(size)
    class_dirs = _class_dirs(p)
    files = _class_files(p, class_dirs)
    x = _read_images(p, files, channels, hw)
    y = np.array([c for _, c in files], dtype=np.int64)
    return _array_bundle(
        name=name or p.name,
        source=str(p),
        xs=[x],
        ys=[y],
        test_fraction=test_fraction,
        seed=seed,
        class_names=[d.name for d in class_dirs],
        extra={"format": "image_folder", "n_files": len(files)},
        channels_first=True,
    )


# the warnings below use stacklevel=3: they point at load_image_folder's caller


def _class_dirs(p: Path) -> list[Path]:
    """The class subfolders, sorted (hidden ones skipped; loose images warned about)."""
    class_dirs = sorted(d for d in p.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise DataError(
            f"{p}: has no subfolders; expected one subfolder of images per class "
            "(e.g. {p}/cat/*.png, {p}/dog/*.png)"
        )
    loose = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES]
    if loose:
        warnings.warn(
            f"{p}: {len(loose)} image(s) directly in the root folder belong to no class "
            "and are skipped",
            stacklevel=3,
        )
    return class_dirs


def _class_files(p: Path, class_dirs: list[Path]) -> list[tuple[Path, int]]:
    """``(image file, class index)`` for every image under the class folders."""
    files: list[tuple[Path, int]] = []
    skipped: list[Path] = []
    for c, d in enumerate(class_dirs):
        members = sorted(f for f in d.rglob("*") if f.is_file() and not _hidden(f, d))
        images = [f for f in members if f.suffix.lower() in IMAGE_SUFFIXES]
        skipped += [f for f in members if f.suffix.lower() not in IMAGE_SUFFIXES]
        if not images:
            raise DataError(
                f"{d}: class folder with no images; expected files ending in "
                + ", ".join(IMAGE_SUFFIXES)
            )
        files += [(f, c) for f in images]
    if skipped:
        warnings.warn(
            f"{p}: skipped {len(skipped)} non-image file(s), e.g. {skipped[0]}", stacklevel=3
        )
    return files


def _read_images(
    p: Path, files: list[tuple[Path, int]], channels: int | None, hw: tuple[int, int] | None
) -> np.ndarray:
    """The images as one (N, C, H, W) array in [0, 1]: resized to ``hw`` if given (else
    all of one size), grey ones repeated to RGB when the folder mixes both."""
    arrays: list[np.ndarray] = []
    first: tuple[Path, tuple[int, ...]] | None = None
    total = 0
    for f, _ in files:
        a = _read(f, channels)
        total += 3 * 4 * (hw[0] * hw[1] if hw is not None else a.shape[1] * a.shape[2])
        _check_bytes(2 * total, str(p), f"{len(files)} images as float32")
        if hw is not None and a.shape[1:] != hw:
            t = torch.from_numpy(a)[None]
            shrink = hw[0] < a.shape[1] or hw[1] < a.shape[2]
            t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
            a = t[0].clamp_(0.0, 1.0).numpy()
        if first is None:
            first = (f, a.shape[1:])
        elif a.shape[1:] != first[1]:
            raise DataError(
                f"images differ in size: {first[0]} is {first[1][1]}x{first[1][0]} but {f} is "
                f"{a.shape[2]}x{a.shape[1]} (width x height); resize them with --size N (Python: size=(H, W))"
            )
        arrays.append(a)
    n_channels = max(a.shape[0] for a in arrays)
    if n_channels == 3:
        arrays = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in arrays]
    return np.stack(arrays)
