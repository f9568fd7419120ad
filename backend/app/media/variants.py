"""Render a variant of an accepted original: a listed width, a target format, no metadata (ADR 0015).

What is asked for (`VariantRecipe`: a width or full size, and a mode) is known before the original is
read; what comes out (format, size, animation) follows from the picture itself, and is decided here:

- `jpeg`, `png`, `webp`, `avif`: that format. Animations stay animated in WebP; the others take frame 0.
- `source` (no `format` asked for): the original's own format when browsers show it, else its family
  (a still GIF too: GIF is written only for animations); an animated APNG or AVIF becomes animated WebP.
- `auto` with the formats the client accepts: an animation becomes animated WebP (or GIF); a still
  becomes AVIF, then WebP, then its family; a still with transparency prefers WebP to AVIF.
- The family: GIF for an animation, PNG for transparency and for PNG or GIF originals, else JPEG.

Pure and synchronous, like thumbnails: the caller runs it in a worker thread. `VariantError` means this
variant can never be made from this original (retrying will not help).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from functools import cached_property
from typing import Final

from PIL import Image, ImageSequence, JpegImagePlugin

from app.media.codecs import register_codecs
from app.media.formats import AVIF, EXTENSIONS, GIF, JPEG, PNG, WEBP, sniff_content_type
from app.media.thumbnail_plan import ORIENTATION_TRANSPOSE, read_orientation
from app.media.thumbnails import DECODE_ERRORS, SOURCE_FORMATS, displayable

# Bumped whenever rendering changes what it makes from the same settings, so new variants get new names.
RENDERER_VERSION: Final = 1
# Values of `?format=`; `source` is what no `format` means.
REQUESTABLE_FORMATS: Final = ("jpeg", "png", "webp", "avif", "auto")
TARGET_TYPES: Final[dict[str, str]] = {"jpeg": JPEG, "png": PNG, "webp": WEBP, "avif": AVIF, "gif": GIF}
# Originals browsers show as they are, so `source` keeps their format.
_KEPT_SOURCE_TYPES: Final = frozenset({JPEG, PNG, WEBP, GIF, AVIF})
_ANIMATABLE_SOURCES: Final = frozenset({GIF, WEBP, PNG, AVIF})
_QUARTER_TURNS: Final = frozenset({5, 6, 7, 8})
# Sharper than the thumbnail's bicubic: at 600-1200 px the difference shows. Reducing first by the
# largest integer factor that keeps twice the target keeps Lanczos' cost small (docs/adr/0015).
_RESAMPLE: Final = Image.Resampling.LANCZOS
_REDUCING_GAP: Final = 2.0
# Animated WebP encodes every frame: method 2 is a third of method 4's time for ~3% more bytes.
_ANIMATED_WEBP_METHOD: Final = 2
_MAX_FRAME_MILLISECONDS: Final = 655_350
# Loop counts are 16 bits in WebP and GIF.
_MAX_LOOP_COUNT: Final = 65_535
_RGB_LIKE: Final = frozenset({"RGB", "RGBA", "RGBX", "P", "PA"})
_GREY_LIKE: Final = frozenset({"L", "LA", "1", "I", "I;16"})


class VariantError(Exception):
    """This variant cannot be made from this original; retrying will not help."""


@dataclass(frozen=True)
class Encoders:
    """Encoder settings (configurable as VARIANT_*); part of every variant's name."""

    jpeg_quality: int = 85
    webp_quality: int = 80
    webp_method: int = 4
    avif_quality: int = 60
    avif_speed: int = 8
    png_compress_level: int = 6

    @cached_property  # on every request's path: hashed once per process
    def fingerprint(self) -> str:
        """Eight hex digits that change with any setting or the renderer, so old variants are never served."""
        described = f"{RENDERER_VERSION}:{self!r}".encode()
        return hashlib.sha256(described).hexdigest()[:8]


@dataclass(frozen=True)
class VariantRecipe:
    """What a request asks for: a width (None: full size) and a mode (a format, `source` or `auto-...`)."""

    width: int | None
    mode: str

    @classmethod
    def fitted(cls, width: int | None, mode: str, stored_size: tuple[int, int]) -> VariantRecipe:
        """The recipe for a picture of this size: a width at or past its longest side is its full size.

        Never upscaled, so all those widths give the same picture; one name keeps it one variant, whoever
        asks (a request, or VARIANT_PREGENERATE). The longest side, as the stored size is not oriented.
        """
        if width is not None and width >= max(stored_size):
            width = None
        return cls(width, mode)

    def name(self, encoders: Encoders) -> str:
        """The variant's name among those of its content: the same request, settings and renderer, same name."""
        return f"{self.width or 'full'}-{self.mode}-{encoders.fingerprint}"


def auto_mode(accepted: Set[str]) -> str:
    """The mode of `format=auto` for a client that accepts these of {"avif", "webp"}."""
    return "-".join(["auto", *sorted(accepted & {"avif", "webp"})])


@dataclass(frozen=True)
class RenderedVariant:
    """An encoded variant and what describes it."""

    data: bytes = field(repr=False)
    content_type: str
    width: int
    height: int
    checksum: str  # SHA-256 hex of `data`, taken in the render's thread

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.content_type]


def render_variant(
    data: bytes, recipe: VariantRecipe, encoders: Encoders, *, max_animation_pixels: int
) -> RenderedVariant:
    """Render `recipe` from the original's bytes (already validated at upload)."""
    register_codecs()
    source_type = sniff_content_type(data[:256])
    try:
        with Image.open(io.BytesIO(data), formats=SOURCE_FORMATS) as image:
            if not isinstance(image, JpegImagePlugin.JpegImageFile):
                image.load()  # a PNG's eXIf may follow the pixels, and alpha is known once loaded
            frames = getattr(image, "n_frames", 1) if source_type in _ANIMATABLE_SOURCES else 1
            animated = frames > 1
            target = _target_type(recipe.mode, source_type, animated=animated, alpha=image.has_transparency_data)
            orientation = read_orientation(image)
            size = _output_size(image.size, orientation, recipe.width)
            if animated and target in (WEBP, GIF):
                if frames * size[0] * size[1] > max_animation_pixels:
                    raise VariantError(
                        f"{frames} frames of {size[0]}x{size[1]} exceed the {max_animation_pixels} pixels an animated "
                        "variant may have; ask for a smaller width"
                    )
                return _encode_animation(image, target, size, orientation, encoders)
            icc_profile = image.info.get("icc_profile") if _keeps_colour_space(image.mode) else None
            picture = _fit_still(image, size, orientation)
            return _encode_still(picture, target, encoders, icc_profile)
    except (*DECODE_ERRORS, OverflowError) as exc:
        # Everything Pillow raises on bytes in memory is a property of the file (an encoder's
        # OverflowError too: a frame duration no format can hold).
        raise VariantError(f"cannot render the image ({type(exc).__name__}: {exc})"[:200]) from exc


def _target_type(mode: str, source_type: str | None, *, animated: bool, alpha: bool) -> str:
    family = GIF if animated else PNG if alpha or source_type in (PNG, GIF) else JPEG
    if mode in TARGET_TYPES:
        return TARGET_TYPES[mode]
    if mode == "source":
        if animated and source_type in (PNG, AVIF):
            # Animations are written as WebP or GIF only; every browser that plays APNG or AVIF plays WebP.
            return WEBP
        # A still GIF becomes PNG: resampled, its colours no longer fit a palette (and nothing encodes a still GIF).
        if source_type in _KEPT_SOURCE_TYPES and (animated or source_type != GIF):
            return source_type
        return family
    accepted = set(mode.split("-")[1:])  # auto-avif-webp, auto-webp, auto
    if animated:
        return WEBP if "webp" in accepted else GIF
    if "avif" in accepted and not (alpha and "webp" in accepted):
        # Pillow's AVIF encodes alpha as lossily as colour; WebP keeps alpha exact (alpha_quality 100).
        return AVIF
    return WEBP if "webp" in accepted else family


def _output_size(stored: tuple[int, int], orientation: int, width: int | None) -> tuple[int, int]:
    """The variant's size as stored (before orientation): `width` wide once oriented, never upscaled."""
    turned = orientation in _QUARTER_TURNS
    shown_width, shown_height = stored[::-1] if turned else stored
    if width is not None and width < shown_width:
        shown_height = max(1, round(shown_height * width / shown_width))
        shown_width = width
    return (shown_height, shown_width) if turned else (shown_width, shown_height)


def _keeps_colour_space(mode: str) -> bool:
    # An ICC profile describes the source's colour space: it stays right for RGB and grey output from
    # RGB and grey sources, not once CMYK has been converted to RGB.
    return mode in _RGB_LIKE or mode in _GREY_LIKE


def _fit_still(image: Image.Image, size: tuple[int, int], orientation: int) -> Image.Image:
    box = None
    if isinstance(image, JpegImagePlugin.JpegImageFile) and size != image.size:
        drafted = image.draft(image.mode, size)  # libjpeg decodes at 1/2..1/8 scale, never below `size`
        if drafted is not None:
            box = drafted[1]
    image.load()
    working = displayable(image)
    if working.size != size:
        working = working.resize(size, _RESAMPLE, box=box, reducing_gap=_REDUCING_GAP)
    elif working is image:
        working = image.copy()
    method = ORIENTATION_TRANSPOSE.get(orientation)
    return working.transpose(method) if method is not None else working


def _encode_still(picture: Image.Image, target: str, encoders: Encoders, icc_profile: bytes | None) -> RenderedVariant:
    picture.info = {}  # nothing of the source's metadata travels, but the colour profile below
    options: dict[str, object] = {"icc_profile": icc_profile} if icc_profile else {}
    if target == JPEG:
        if picture.mode in ("LA", "RGBA"):
            picture = _flatten(picture)
        options |= {"quality": encoders.jpeg_quality, "progressive": True, "subsampling": "4:2:0"}
        pillow_format = "JPEG"
    elif target == PNG:
        options |= {"compress_level": encoders.png_compress_level, "optimize": False}
        pillow_format = "PNG"
    elif target == WEBP:
        options |= {"quality": encoders.webp_quality, "method": encoders.webp_method}
        pillow_format = "WEBP"
    elif target == AVIF:
        # Set explicitly: libavif's default thread count follows the host, not the render slots.
        options |= {"quality": encoders.avif_quality, "speed": encoders.avif_speed, "max_threads": 2}
        pillow_format = "AVIF"
    else:  # a still never becomes GIF (the family of a still GIF is PNG)
        raise VariantError(f"cannot encode a still image as {target}")
    buffer = io.BytesIO()
    picture.save(buffer, pillow_format, **options)
    return _described(buffer.getvalue(), target, picture.size)


def _flatten(picture: Image.Image) -> Image.Image:
    """Transparent pixels over white, as JPEG has no alpha (and browsers show a page's white behind them)."""
    opaque_mode = "L" if picture.mode == "LA" else "RGB"
    background = Image.new(opaque_mode, picture.size, 255 if opaque_mode == "L" else (255, 255, 255))
    background.paste(picture.convert(opaque_mode), mask=picture.getchannel("A"))
    return background


def _encode_animation(
    image: Image.Image, target: str, size: tuple[int, int], orientation: int, encoders: Encoders
) -> RenderedVariant:
    durations: list[int] = []

    def frames() -> Iterator[Image.Image]:
        for frame in ImageSequence.Iterator(image):
            # GIF stores hundredths of a second in 16 bits.
            durations.append(min(max(int(frame.info.get("duration", 100)), 0), _MAX_FRAME_MILLISECONDS))
            picture = frame.convert("RGBA")
            # The source's info (its loop count among it) would be taken for encoder options.
            picture.info = {}
            if picture.size != size:
                picture = picture.resize(size, _RESAMPLE, reducing_gap=_REDUCING_GAP)
            method = ORIENTATION_TRANSPOSE.get(orientation)
            yield picture.transpose(method) if method is not None else picture

    plays = _plays(image)
    rendered = list(frames())  # bounded by max_animation_pixels, checked by the caller
    first, rest = rendered[0], rendered[1:]
    buffer = io.BytesIO()
    if target == WEBP:
        first.save(
            buffer,
            "WEBP",
            save_all=True,
            append_images=rest,
            duration=durations,
            loop=min(plays, _MAX_LOOP_COUNT),
            quality=encoders.webp_quality,
            method=min(encoders.webp_method, _ANIMATED_WEBP_METHOD),
        )
    else:
        # No NETSCAPE extension plays once; its count N repeats N times after the first play.
        looping = {} if plays == 1 else {"loop": max(plays - 1, 0)}
        first.save(buffer, "GIF", save_all=True, append_images=rest, duration=durations, disposal=2, **looping)
    return _described(buffer.getvalue(), target, first.size)


def _plays(image: Image.Image) -> int:
    """How many times the animation plays (0: forever), as browsers play the source.

    WebP and APNG store that number. A GIF stores repetitions after the first play, and one without a
    looping extension (no `loop`) plays once. Pillow does not read an AVIF's count: those loop forever.
    """
    loop = image.info.get("loop")
    if image.format == "GIF":
        return 1 if loop is None else 0 if int(loop) == 0 else min(int(loop) + 1, _MAX_LOOP_COUNT)
    return int(loop or 0)


def _described(data: bytes, content_type: str, size: tuple[int, int]) -> RenderedVariant:
    return RenderedVariant(
        data=data,
        content_type=content_type,
        width=size[0],
        height=size[1],
        checksum=hashlib.sha256(data).hexdigest(),
    )
