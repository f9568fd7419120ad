"""GIF metadata stripping: comments, plain text and XMP go; frames, timing, looping and ICC stay."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageSequence

from app.media.containers import MalformedContainer
from app.media.formats import GIF
from app.media.metadata import strip_metadata
from tests.unit.media import samples

# Adobe's XMP application extension ends with a 258-byte "magic trailer" that makes it skippable.
XMP_EXTENSION = samples.gif_application(b"XMP DataXMP", samples.XMP + bytes([1, *range(255, -1, -1), 0]))
ICC_EXTENSION = samples.gif_application(b"ICCRGBG1012", samples.srgb_profile())


def strip(data: bytes) -> bytes:
    return strip_metadata(data, GIF)


def animation(**options: object) -> bytes:
    frames = [samples.photo((30, 20), seed=seed).convert("P", palette=Image.Palette.ADAPTIVE) for seed in range(3)]
    return samples.encode_frames(frames, "GIF", duration=[30, 60, 90], loop=0, disposal=2, **options)


def timing(data: bytes) -> list[tuple[object, object]]:
    with Image.open(io.BytesIO(data)) as image:
        return [(frame.info.get("duration"), frame.info.get("loop")) for frame in ImageSequence.Iterator(image)]


def annotated_animation() -> bytes:
    """An animation with a comment (written by Pillow), XMP, plain text, an unknown extension and ICC."""
    gif = animation(comment=samples.COMMENT)
    blocks = [
        XMP_EXTENSION,
        samples.gif_plain_text(b"SecretPerson"),
        samples.gif_extension(0xCE, samples.MODEL),
        ICC_EXTENSION,
    ]
    return samples.with_gif_blocks(gif, blocks) + b"after the trailer " + samples.COMMENT


def test_comments_xmp_and_plain_text_are_gone_and_every_frame_is_unchanged() -> None:
    original = annotated_animation()

    stripped = strip(original)

    assert samples.leaks(original) != []
    assert samples.leaks(stripped) == []
    assert not {"comment", "xmp"} & samples.info(stripped).keys()
    assert len(samples.decoded_frames(stripped)) == 3
    assert samples.decoded_frames(stripped) == samples.decoded_frames(original)
    assert timing(stripped) == timing(original)


def test_looping_and_icc_extensions_are_kept_byte_for_byte() -> None:
    animexts = samples.gif_application(b"ANIMEXTS1.0", b"\x01\x05\x00")
    original = samples.with_gif_blocks(annotated_animation(), [animexts])

    stripped = strip(original)

    assert ICC_EXTENSION in stripped
    assert animexts in stripped
    assert b"NETSCAPE2.0" in stripped
    assert samples.info(stripped)["loop"] == 0


def test_the_result_ends_at_the_trailer() -> None:
    stripped = strip(annotated_animation())

    assert stripped.endswith(b"\x00;")
    assert stripped.count(b"after the trailer") == 0


def test_a_file_that_ends_between_blocks_gets_its_trailer() -> None:
    gif = animation()
    assert gif.endswith(b";")

    stripped = strip(gif[:-1])

    assert stripped == gif


def test_a_file_without_metadata_comes_out_unchanged() -> None:
    still = samples.encode(samples.photo().convert("P"), "GIF")

    assert strip(still) == still
    assert strip(animation()) == animation()


def test_stripping_twice_changes_nothing() -> None:
    once = strip(annotated_animation())

    assert strip(once) == once


@pytest.mark.parametrize("cut", [5, 12, 30, -2])
def test_a_file_cut_inside_a_block_is_malformed(cut: int) -> None:
    gif = samples.with_gif_blocks(animation(), [XMP_EXTENSION])

    with pytest.raises(MalformedContainer):
        strip(gif[:cut])
