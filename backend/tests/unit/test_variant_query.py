"""`?w=&format=` and `Accept`: which variant a request asks for, and INVALID_VARIANT for anything else."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from starlette.requests import Request

from app.api.variant_query import VariantQuery, accepted_formats, parse_variant_query
from app.config import Settings
from app.errors import InvalidVariant
from app.media.variants import REQUESTABLE_FORMATS, VariantRecipe
from app.services.variant_naming import pregenerated_recipes

WIDTHS = (150, 300, 600, 1200)
CHROMIUM = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
FIREFOX = "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"
SAFARI_15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"


def request(query: str, accept: str | None = None) -> Request:
    headers = [(b"accept", accept.encode("latin-1"))] if accept is not None else []
    return Request({"type": "http", "method": "GET", "path": "/", "query_string": query.encode(), "headers": headers})


def parsed(query: str, accept: str | None = None) -> VariantQuery | None:
    return parse_variant_query(request(query, accept), WIDTHS)


# --- Accept ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (CHROMIUM, {"avif", "webp"}),
        (FIREFOX, {"avif", "webp"}),
        (SAFARI_15, {"webp"}),
        ("*/*", set()),
        ("image/*", set()),
        ("image/*;q=1, */*", set()),  # wildcards never stand for AVIF or WebP
        (None, set()),
        ("", set()),
        ("image/avif;q=0, image/webp", {"webp"}),
        ("image/avif;q=0.0, image/webp;q=0.000", set()),
        ("image/avif; q=0.001", {"avif"}),
        ("image/avif;Q=0", set()),
        ("IMAGE/AVIF, Image/WebP", {"avif", "webp"}),
        ("image/webp;foo=bar;q=0", set()),
        ("image/webp;q=0.5;foo=bar", {"webp"}),
        (" image/webp ; q = 0.5 ", {"webp"}),
        ("image/webp;q=abc", set()),  # an unreadable quality is no consent
        ("image/webp;q=-1", set()),
        ("image/avifx, image/web, application/webp", set()),
        (",,;;,image/webp,", {"webp"}),
    ],
)
def test_accept_names_avif_and_webp_only_explicitly_and_with_a_positive_quality(
    accept: str | None, expected: set[str]
) -> None:
    assert accepted_formats(accept) == expected


@pytest.mark.parametrize(
    ("accept", "mode"),
    [
        (CHROMIUM, "auto-avif-webp"),
        (SAFARI_15, "auto-webp"),
        ("image/avif", "auto-avif"),
        ("*/*", "auto"),
        (None, "auto"),
    ],
)
def test_format_auto_is_negotiated_from_accept(accept: str | None, mode: str) -> None:
    assert parsed("w=300&format=auto", accept) == VariantQuery(300, mode, negotiated=True)


# --- the query -------------------------------------------------------------------------------------


def test_no_query_is_the_original() -> None:
    assert parsed("") is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("w=150", VariantQuery(150, "source", negotiated=False)),
        ("w=1200", VariantQuery(1200, "source", negotiated=False)),
        ("format=webp", VariantQuery(None, "webp", negotiated=False)),
        ("format=jpeg&w=600", VariantQuery(600, "jpeg", negotiated=False)),
        ("w=300&format=avif", VariantQuery(300, "avif", negotiated=False)),
        ("w=300&format=png", VariantQuery(300, "png", negotiated=False)),
        ("format=auto", VariantQuery(None, "auto", negotiated=True)),
    ],
)
def test_listed_widths_and_formats_are_parsed(query: str, expected: VariantQuery) -> None:
    assert parsed(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "w=13",
        "w=149",
        "w=abc",
        "w=99999999999999999999",
        "w=00000000000000000150",
        "w=-150",
        "w=+150",
        "w=150.0",
        "w=1e3",
        "w= 150",
        f"w={quote(chr(0xFF11) + chr(0xFF15) + chr(0xFF10))}",  # fullwidth digits are digits to str.isdigit
        f"w={quote(chr(0x661) + chr(0x665) + chr(0x660))}",  # so are Arabic-Indic ones
        "w=",
        "w",
        "format=gif",
        "format=heic",
        "format=",
        "format=JPEG",
        "format=source",  # what no format means, not a value
        "format=auto-webp",  # a mode, not a value
        "w=150&w=300",
        "w=150&w=150",
        "format=webp&format=webp",
        "size=150",
        "W=150",
        "w=150&format=webp&quality=100",
        "&w=150&x",
    ],
)
def test_anything_else_is_invalid_variant_listing_what_is_served(query: str) -> None:
    with pytest.raises(InvalidVariant) as raised:
        parsed(query)
    assert raised.value.status_code == 400
    assert raised.value.code == "INVALID_VARIANT"
    assert raised.value.details == {
        "parameters": ["w", "format"],
        "widths": list(WIDTHS),
        "formats": list(REQUESTABLE_FORMATS),
    }


def test_the_listed_widths_are_the_configured_ones() -> None:
    assert parse_variant_query(request("w=640"), (320, 640)) == VariantQuery(640, "source", negotiated=False)
    with pytest.raises(InvalidVariant):
        parse_variant_query(request("w=600"), (320, 640))


# --- from a query to a recipe ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "size", "recipe_width"),
    [
        (300, (800, 600), 300),
        (600, (800, 600), 600),
        (1200, (800, 600), None),  # never upscaled: the full size, under the full size's name
        (800, (800, 600), None),
        (600, (600, 800), 600),  # stored size, not oriented: the longest side decides
        (150, (150, 150), None),
        (None, (800, 600), None),
    ],
)
def test_a_width_at_or_past_the_pictures_longest_side_is_its_full_size(
    width: int | None, size: tuple[int, int], recipe_width: int | None
) -> None:
    query = VariantQuery(width, "webp", negotiated=False)
    assert query.recipe_for({"width": size[0], "height": size[1]}) == VariantRecipe(recipe_width, "webp")


def test_pregenerated_recipes_are_fitted_like_requests() -> None:
    settings = Settings(variant_pregenerate="300:webp,1200:avif,full:avif,150:jpeg")
    large = pregenerated_recipes(settings, (1600, 1200))
    assert large == [
        VariantRecipe(300, "webp"),
        VariantRecipe(1200, "avif"),
        VariantRecipe(None, "avif"),
        VariantRecipe(150, "jpeg"),
    ]
    # 1200 and full are one variant of a 400 px picture; 300 and 150 still fit.
    assert pregenerated_recipes(settings, (400, 300)) == [
        VariantRecipe(300, "webp"),
        VariantRecipe(None, "avif"),
        VariantRecipe(150, "jpeg"),
    ]
    for recipe in pregenerated_recipes(settings, (400, 300)):
        query = VariantQuery(recipe.width or 1200, recipe.mode, negotiated=False)
        assert query.recipe_for({"width": 400, "height": 300}) == recipe  # what a request then finds
