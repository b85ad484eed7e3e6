"""The real scene: Middlebury's Aloe stereo pair with its ground-truth disparity, as shipped in Debian's
`opencv-doc` (OpenCV's sample data: examples/data/aloeL.jpg, aloeR.jpg, aloeGT.png; GT 0 = unknown).

The ground truth is disparity d between the two views; depth is f B / d, i.e. known up to the unknown
focal length x baseline product (and up to the pair's unknown disparity offset: the images are crops,
which we take as 0). We work at 1/`downsample` of the 1282 x 1110 resolution (block median of the known
disparities, a block counts when at least half of it is known) and set the unknown scale so the median
depth is `median_depth` metres (a table-top scene): that scale only sets the sensor noise in metres, and
every reported metric is either scale-free (AbsRel, delta1) or in full-resolution disparity pixels.
"""
from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

from core.errors import UserError
from domains.pointclouds.geometry import intrinsic_matrix

DATA_DIRS = (Path("/usr/share/doc/opencv-doc/examples/data"), Path("/usr/share/opencv4/samples/data"),
             Path("/usr/local/share/opencv4/samples/data"))
FILES = ("aloeL.jpg", "aloeGT.png")
FOCAL_FULL = 3740.0   # pixels at full size (Middlebury 2005/2006 data sets)


def find_file(name: str, dirs=DATA_DIRS) -> Path:
    for folder in dirs:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.exists():
                return candidate
    raise UserError(f"{name}: OpenCV's sample data (the Middlebury Aloe pair) was not found in "
                    f"{', '.join(str(d) for d in dirs)}; install Debian's opencv-doc package "
                    "(sudo apt-get install opencv-doc, as env/install.sh does) or set aloe.use=false")


def _read_image(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    try:
        return np.asarray(Image.open(io.BytesIO(raw)))
    except Exception as exc:  # a truncated or damaged file in the package
        raise UserError(f"{path}: cannot decode this image ({exc}); reinstall opencv-doc") from None


def block_median(disparity: np.ndarray, factor: int) -> np.ndarray:
    """Downsample known disparities (> 0) by `factor`: the median of each block's known values where at
    least half of the block is known, else 0 (unknown)."""
    h, w = (disparity.shape[0] // factor) * factor, (disparity.shape[1] // factor) * factor
    blocks = disparity[:h, :w].astype(np.float64).reshape(h // factor, factor, w // factor, factor)
    blocks = blocks.transpose(0, 2, 1, 3).reshape(h // factor, w // factor, -1)
    known = blocks > 0
    enough = known.mean(2) >= 0.5
    out = np.zeros(blocks.shape[:2])
    if enough.any():   # medians of the blocks that count only (no all-unknown slices)
        out[enough] = np.nanmedian(np.where(known[enough], blocks[enough], np.nan), axis=1)
    return out


def load(downsample: int, median_depth: float, dirs=DATA_DIRS) -> dict[str, np.ndarray | float]:
    """Image [h, w, 3] uint8, depth [h, w] float32 (0 = unknown), K, and `disparity_scale` c with
    full-resolution disparity = c / depth."""
    left = _read_image(find_file(FILES[0], dirs))
    gt = _read_image(find_file(FILES[1], dirs))
    if gt.ndim == 3:
        gt = gt[..., 0]
    if left.shape[:2] != gt.shape:
        raise UserError(f"Aloe: image {left.shape[:2]} and ground truth {gt.shape} differ in size; "
                        "reinstall opencv-doc")
    disp = block_median(gt, downsample)                     # full-resolution disparity pixels
    h, w = disp.shape
    image = np.asarray(Image.fromarray(left[: h * downsample, : w * downsample]).resize((w, h), Image.BOX))
    known = disp > 0
    c = median_depth * float(np.median(disp[known]))        # depth = c / disparity
    depth = np.where(known, c / np.where(known, disp, 1.0), 0.0).astype(np.float32)
    f = FOCAL_FULL / downsample
    K = intrinsic_matrix(f, f, (w - 1) / 2, (h - 1) / 2)
    return {"image": image, "depth": depth, "K": K, "disparity_scale": c}
