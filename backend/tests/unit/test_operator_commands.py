"""The operator commands without services: what a thumbnail recipe changes with, where a regenerated
thumbnail goes, and the command line refusing misuse before it touches anything."""

from __future__ import annotations

import uuid

import pytest

from app.admin.__main__ import main
from app.config import Settings
from app.jobs.maintenance import regenerated_thumbnail_key
from app.media.thumbnails import RenderedThumbnail
from app.services.thumbnail_recipe import thumbnail_recipe


def test_the_recipe_changes_with_the_size_and_the_pregenerated_variants_only() -> None:
    today = Settings(thumbnail_size=300)
    assert thumbnail_recipe(today).startswith("300:")
    assert thumbnail_recipe(Settings(thumbnail_size=300)) == thumbnail_recipe(today)
    assert thumbnail_recipe(Settings(thumbnail_size=200)).startswith("200:")
    # Encoders only matter once the job makes variants with them.
    assert thumbnail_recipe(Settings(thumbnail_size=300, variant_webp_quality=50)) == thumbnail_recipe(today)
    pregenerating = Settings(thumbnail_size=300, variant_pregenerate="300:webp")
    assert thumbnail_recipe(pregenerating) != thumbnail_recipe(today)
    other_quality = Settings(thumbnail_size=300, variant_pregenerate="300:webp", variant_webp_quality=50)
    assert thumbnail_recipe(other_quality) != thumbnail_recipe(pregenerating)
    assert len(thumbnail_recipe(other_quality)) <= 64  # images.thumbnail_recipe


def test_a_regenerated_thumbnail_is_named_by_its_image_and_its_bytes() -> None:
    image_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    jpeg = RenderedThumbnail(data=b"x", content_type="image/jpeg", width=1, height=1, checksum="ab" * 32)
    png = RenderedThumbnail(data=b"y", content_type="image/png", width=1, height=1, checksum="cd" * 32)
    assert regenerated_thumbnail_key(image_id, jpeg) == f"thumbnails/{image_id}-{'ab' * 8}.jpg"
    assert regenerated_thumbnail_key(image_id, png) == f"thumbnails/{image_id}-{'cd' * 8}.png"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["regenerate"], "one of the arguments --all --image --user --since is required"),
        (["regenerate", "--all", "--user", "a@example.com"], "not allowed with argument"),
        (["regenerate", "--image", "not-a-uuid"], "'not-a-uuid' is not an image id (a UUID)"),
        (["regenerate", "--since", "04/12/2026"], "'04/12/2026' is not a day written YYYY-MM-DD"),
        (["regenerate", "--all", "--window", "0"], "'0' is not a positive whole number"),
        (["jobs", "retry"], "name image ids or job ids, or give --all (not both)"),
        (["jobs", "retry", "--all", "42"], "name image ids or job ids, or give --all (not both)"),
        (["jobs", "retry", "abc"], "'abc' is neither an image id (a UUID) nor a job id (a number)"),
        (["jobs", "failed", "--limit", "-3"], "is not a positive whole number"),
        (["scrub", "--window", "x"], "'x' is not a positive whole number"),
    ],
)
def test_the_command_line_refuses_misuse_with_status_2(
    arguments: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(arguments)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
