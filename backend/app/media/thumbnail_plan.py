"""How a thumbnail is cut from a picture: its orientation, its size, and the cheapest decode that covers it.

Shared by upload validation and thumbnail rendering, so a JPEG can be decoded once: validation must
read the whole bitstream anyway, and when it does so at the scale the thumbnail needs, the decoded
frame is all the thumbnail job has to start from (ADR 0008).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from PIL import ExifTags, Image, JpegImagePlugin

# The same table as ImageOps.exif_transpose; applied to the small result instead of the decoded source.
ORIENTATION_TRANSPOSE: Final[dict[int, Image.Transpose]] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Orientations that turn the stored picture a quarter turn, so stored width is displayed height.
_QUARTER_TURNS: Final = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class ThumbnailPlan:
    """What to do with frame 0 once decoded: resize to `target` (stored orientation), then orient."""

    orientation: int
    target: tuple[int, int]
    # Where the original pixels lie in a draft-decoded frame (its last row/column may be partial).
    box: tuple[float, float, float, float] | None


@dataclass(frozen=True)
class DecodedFrame:
    """Frame 0 of an accepted JPEG, decoded by validation at the plan's scale, detached from its file."""

    image: Image.Image = field(repr=False)
    plan: ThumbnailPlan

    @property
    def nbytes(self) -> int:
        """About what the decoded pixels take in memory."""
        width, height = self.image.size
        return width * height * len(self.image.getbands())


def plan_thumbnail(image: Image.Image, max_side: int) -> ThumbnailPlan:
    """Read the orientation and, for a JPEG not yet loaded, ask for the smallest decode scale that fits.

    libjpeg then decodes at 1/2, 1/4 or 1/8 scale, never below the target in either dimension. The
    target is in stored orientation, so a quarter-turned photo is not decoded too small.
    """
    orientation = read_orientation(image)
    oriented_size = image.size[::-1] if orientation in _QUARTER_TURNS else image.size
    oriented_target = fitted_size(*oriented_size, max_side=max_side)
    target = oriented_target[::-1] if orientation in _QUARTER_TURNS else oriented_target
    box: tuple[float, float, float, float] | None = None
    # MPO is a JpegImageFile too: its frame 0 is an ordinary JPEG.
    if isinstance(image, JpegImagePlugin.JpegImageFile) and target != image.size:
        drafted = image.draft(image.mode, target)
        if drafted is not None:
            box = drafted[1]
    return ThumbnailPlan(orientation=orientation, target=target, box=box)


def read_orientation(image: Image.Image) -> int:
    """Return the EXIF orientation as Pillow reports it (EXIF, PNG text or XMP); 1 when absent or unreadable."""
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        # Broken metadata must not cost a thumbnail of a picture that decodes: browsers show such files
        # as stored, and so do we.
        return 1
    return orientation if isinstance(orientation, int) and orientation in ORIENTATION_TRANSPOSE else 1


def fitted_size(width: int, height: int, *, max_side: int) -> tuple[int, int]:
    """Fit (width, height) into a max_side square keeping the aspect ratio; never upscale."""
    if width <= max_side and height <= max_side:
        return width, height
    # The long side is exact; of the two whole numbers around the scaled short side, keep the one whose
    # aspect ratio is closest to the source's (the rule Image.thumbnail uses, so sizes match Pillow's).
    aspect = width / height
    if width > height:
        exact = max_side / aspect
        candidates = [(max_side, max(1, short)) for short in (math.floor(exact), math.ceil(exact))]
    else:
        exact = max_side * aspect
        candidates = [(max(1, short), max_side) for short in (math.floor(exact), math.ceil(exact))]
    return min(candidates, key=lambda size: abs(aspect - size[0] / size[1]))
