"""File-name sanitising and the Content-Disposition header built from it."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import pytest

from app.utils.filenames import MAX_FILENAME_BYTES, content_disposition, sanitize_filename

# filename*=UTF-8''<value> is the last parameter whenever it is present.
EXTENDED_FILENAME = re.compile(r"; filename\*=UTF-8''([^;\s]+)$")
PLAIN_FILENAME = re.compile(r'filename="((?:[^"\\]|\\.)*)"')


def extended_filename(header: str) -> str | None:
    match = EXTENDED_FILENAME.search(header)
    return unquote(match.group(1), errors="strict") if match else None


def plain_filename(header: str) -> str:
    match = PLAIN_FILENAME.search(header)
    assert match is not None, header
    return match.group(1)


# --- sanitize_filename ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("/abs/x.jpg", "x.jpg"),
        ("C:\\Users\\me\\Pictures\\holiday.jpg", "holiday.jpg"),
        ("uploads/../../../secret.png", "secret.png"),
        ("dir/", "image.jpg"),
        ("../", "image.jpg"),
    ],
)
def test_sanitize_keeps_only_the_last_path_component(raw: str, expected: str) -> None:
    assert sanitize_filename(raw, fallback_extension=".jpg") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cat\x00.jpg", "cat.jpg"),
        ("cat\r\nSet-Cookie: x=1.jpg", "catSet-Cookie: x=1.jpg"),
        ("\x1b[31mred\x1b[0m.png", "[31mred[0m.png"),
        ("tab\there.jpg", "tabhere.jpg"),
        ("del\x7f.jpg", "del.jpg"),
        ("zero\u200bwidth.jpg", "zerowidth.jpg"),
        ("bom\ufeff.jpg", "bom.jpg"),
        ("lone\ud800surrogate.jpg", "lonesurrogate.jpg"),
    ],
)
def test_sanitize_drops_control_and_format_characters(raw: str, expected: str) -> None:
    assert sanitize_filename(raw, fallback_extension=".jpg") == expected


@pytest.mark.parametrize("override", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"])
def test_sanitize_removes_bidi_controls_that_disguise_the_extension(override: str) -> None:
    # "invoice<RLO>gpj.exe" displays as "invoiceexe.jpg" but is an .exe.
    name = sanitize_filename(f"invoice{override}gpj.exe", fallback_extension=".jpg")

    assert name == "invoicegpj.exe"
    assert all(unicodedata.category(char) != "Cf" for char in name)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("फोटो.jpg", "फोटो.jpg"),
        ("写真 1.png", "写真 1.png"),
        ("😀 party 🎉.jpg", "😀 party 🎉.jpg"),
        ("👩\u200d💻 at work.png", "👩\u200d💻 at work.png"),  # the joiner keeps one emoji, not two
        ("Ünïcödé façade.jpg", "Ünïcödé façade.jpg"),
        ("صورة.png", "صورة.png"),
    ],
)
def test_sanitize_keeps_unicode_letters_and_emoji(raw: str, expected: str) -> None:
    assert sanitize_filename(raw, fallback_extension=".jpg") == expected


def test_sanitize_normalises_to_nfc() -> None:
    decomposed = "cafe\u0301.jpg"

    assert sanitize_filename(decomposed, fallback_extension=".jpg") == "caf\u00e9.jpg"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  my   holiday\t photo .jpg  ", "my holiday photo .jpg"),
        ("line\u2028break.jpg", "line break.jpg"),
        ("wide\u3000space.jpg", "wide space.jpg"),
        ("...hidden.jpg", "hidden.jpg"),
        ("trailing.jpg...", "trailing.jpg"),
        (". . .x.png. . ", "x.png"),
    ],
)
def test_sanitize_collapses_whitespace_and_strips_dots_and_spaces(raw: str, expected: str) -> None:
    assert sanitize_filename(raw, fallback_extension=".jpg") == expected


@pytest.mark.parametrize("raw", [None, "", "...", "..", ".", "   ", " . . ", "\x00\x01", "\u202e", "a/b/", "/"])
def test_sanitize_falls_back_when_nothing_is_left(raw: str | None) -> None:
    assert sanitize_filename(raw, fallback_extension=".jpg") == "image.jpg"
    assert sanitize_filename(raw, fallback_extension=".png") == "image.png"


@pytest.mark.parametrize("stem_character", ["a", "é", "फ", "写", "😀"])
def test_sanitize_caps_long_names_at_255_bytes_keeping_the_extension(stem_character: str) -> None:
    name = sanitize_filename(stem_character * 1000 + ".jpeg", fallback_extension=".jpg")

    encoded = name.encode("utf-8")  # a cut through a multi-byte character would fail here
    assert len(encoded) <= MAX_FILENAME_BYTES
    assert len(encoded) > MAX_FILENAME_BYTES - 4  # cut on the last whole character, not earlier
    assert name.endswith(".jpeg")
    assert set(name.removesuffix(".jpeg")) == {stem_character}


def test_sanitize_caps_a_long_name_without_an_extension() -> None:
    name = sanitize_filename("x" * 1000, fallback_extension=".jpg")

    assert name == "x" * MAX_FILENAME_BYTES


def test_sanitize_treats_an_overlong_suffix_as_part_of_the_name() -> None:
    name = sanitize_filename("photo." + "y" * 1000, fallback_extension=".jpg")

    assert len(name.encode("utf-8")) == MAX_FILENAME_BYTES
    assert name.startswith("photo.yyy")


def test_sanitize_does_not_touch_a_name_of_exactly_255_bytes() -> None:
    raw = "a" * (MAX_FILENAME_BYTES - 4) + ".png"

    assert sanitize_filename(raw, fallback_extension=".jpg") == raw


# --- content_disposition ------------------------------------------------------------------------


def test_content_disposition_for_a_plain_ascii_name() -> None:
    assert content_disposition("holiday photo.jpg") == 'inline; filename="holiday photo.jpg"'
    assert content_disposition("x.png", "attachment") == 'attachment; filename="x.png"'


@pytest.mark.parametrize(
    ("filename", "ascii_fallback"),
    [
        ("फोटो.jpg", "_.jpg"),
        ("写真 1.png", "_ 1.png"),
        ("😀 party.jpg", "_ party.jpg"),
        ("café.jpg", "cafe.jpg"),
        ("Ünïcödé.png", "Unicode.png"),
        ("\uff46\uff55\uff4c\uff4c.jpg", "full.jpg"),  # fullwidth letters
        ("100%.jpg", "100_.jpg"),
    ],
)
def test_content_disposition_for_unicode_has_ascii_fallback_and_utf8_name(filename: str, ascii_fallback: str) -> None:
    header = content_disposition(filename)

    assert header.isascii()
    assert plain_filename(header) == ascii_fallback
    assert extended_filename(header) == filename


@pytest.mark.parametrize("filename", ['say "cheese".jpg', 'back\\slash".png', '";x=".jpg'])
def test_content_disposition_quotes_cannot_end_the_parameter_early(filename: str) -> None:
    header = content_disposition(filename)

    # The quoted filename holds neither quotes nor backslashes, so the value parses as one parameter.
    fallback = plain_filename(header)
    assert '"' not in fallback
    assert "\\" not in fallback
    assert header.count('"') == 2
    assert extended_filename(header) == filename


@pytest.mark.parametrize(
    "filename",
    [
        "evil.jpg\r\nSet-Cookie: session=stolen",
        "evil\n.jpg",
        "evil\r.jpg",
        "nul\x00.jpg",
        "next\u0085line.jpg",
        "फोटो\r\nX-Injected: 1.jpg",
    ],
)
def test_content_disposition_never_contains_line_breaks(filename: str) -> None:
    header = content_disposition(filename)

    assert header.isascii()
    assert all(char.isprintable() for char in header)
    assert "\r" not in header
    assert "\n" not in header
    # The control characters are gone from the decoded name too, not merely encoded.
    decoded = extended_filename(header) or plain_filename(header)
    assert not any(unicodedata.category(char) == "Cc" for char in decoded)


def test_content_disposition_of_a_name_with_nothing_printable_still_names_something() -> None:
    assert content_disposition("\r\n") == 'inline; filename="_"'


def test_content_disposition_rejects_unknown_dispositions() -> None:
    with pytest.raises(ValueError, match="disposition"):
        content_disposition("x.jpg", 'inline; filename="other.exe"')


@pytest.mark.parametrize("raw", ["../../etc/passwd", "写真\u202e gpj.exe", "a" * 1000 + ".jpg", "\x00", "😀.png"])
def test_sanitized_names_always_round_trip_through_content_disposition(raw: str) -> None:
    name = sanitize_filename(raw, fallback_extension=".jpg")
    header = content_disposition(name, "attachment")

    assert (extended_filename(header) or plain_filename(header)) == name
