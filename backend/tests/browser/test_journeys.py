"""A person's journeys in Chromium: register, upload, look, copy, delete; anonymous uploads; logging in."""

from __future__ import annotations

import io
import os
import re

from PIL import Image
from playwright.async_api import Page, Route, expect

from tests.browser.conftest import LiveServer, accept_next_dialog, create_account, screenshot, unique_email
from tests.conftest import corpus_bytes
from tests.factories import make_png

IMAGE_PAGE = re.compile(r"/image/([0-9a-f-]{36})$")
WARNING = "Save this token! It's the only way to delete this image."

# Runs after the page's own handlers: reports what the progress bar shows at each step of the upload.
WATCH_PROGRESS = """
() => {
  const form = document.getElementById("upload-form");
  const bar = document.getElementById("upload-progress");
  const report = () => window.reportProgress(bar.value);
  form.addEventListener("htmx:xhr:progress", report);
  form.addEventListener("htmx:afterRequest", report);
}
"""


def noise_jpeg(width: int, height: int) -> bytes:
    """A photo-sized JPEG: noise does not compress, so its bytes take a while to go up."""
    buffer = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


async def _choose_file(page: Page, name: str, mime_type: str, body: bytes) -> None:
    await page.locator("#file-input").set_input_files({"name": name, "mimeType": mime_type, "buffer": body})


async def test_register_upload_view_copy_link_and_delete(page: Page, live_server: LiveServer) -> None:
    email = unique_email("journey")
    await page.goto("/register")
    await screenshot(page, "register")
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Register").click()
    await expect(page.get_by_role("heading", name="Your gallery")).to_be_visible()
    await expect(page.locator(".nav-user")).to_have_text(email)
    await screenshot(page, "home-empty-gallery")

    await page.get_by_role("link", name="Upload", exact=True).click()
    await expect(page.get_by_role("heading", name="Upload an image")).to_be_visible()
    progress: list[float] = []
    await page.expose_function("reportProgress", lambda value: progress.append(value))
    await page.evaluate(WATCH_PROGRESS)
    photo = noise_jpeg(1200, 900)
    await _choose_file(page, "holiday photo.jpg", "image/jpeg", photo)
    await expect(page.locator("#preview")).to_be_visible()
    await expect(page.locator("#file-name")).to_contain_text("holiday photo.jpg")
    await expect(page.get_by_role("button", name="Upload", exact=True)).to_be_enabled()
    await screenshot(page, "upload-preview")
    # Loopback is too fast to watch: slow the upload to 1 MB/s, as a mobile link would be.
    network = await page.context.new_cdp_session(page)
    await network.send("Network.enable")
    await network.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 1024 * 1024},
    )
    await page.get_by_role("button", name="Upload", exact=True).click()

    await page.wait_for_url(IMAGE_PAGE)
    assert progress, "the progress bar never moved"
    assert any(0 < value < 100 for value in progress), progress  # seen on the way, not only at the end
    assert max(progress) == 100
    assert progress == sorted(progress)  # it only goes forward
    match = IMAGE_PAGE.search(page.url)
    assert match is not None
    image_id = match.group(1)
    await expect(page.get_by_role("heading", name="holiday photo.jpg")).to_be_visible()
    image = page.get_by_role("img", name="holiday photo.jpg")
    await expect(image).to_be_visible()
    await page.wait_for_function("document.getElementById('main-image').complete")
    assert await image.evaluate("img => img.naturalWidth") > 0
    # 840 px is drawn (70% of the height): the whole 1200 px picture is the smallest that covers it, and
    # at full size a JPEG is sent as it is stored.
    shown = f"{live_server.base_url}/api/v1/images/{image_id}/file"
    assert await image.evaluate("img => img.currentSrc") == shown
    await expect(page.locator(".facts")).to_contain_text("1200 \N{MULTIPLICATION SIGN} 900 px")
    await expect(page.locator(".facts")).to_contain_text("image/jpeg")
    await screenshot(page, "image-page-owner")

    await page.get_by_role("button", name="Copy link").click()
    await expect(page.get_by_role("button", name="Copied!")).to_be_visible()
    direct_link = f"{live_server.base_url}/api/v1/images/{image_id}/file"
    assert await page.evaluate("navigator.clipboard.readText()") == direct_link
    download = page.get_by_role("link", name="Download")
    assert await download.get_attribute("href") == f"/api/v1/images/{image_id}/file"

    dialogs = accept_next_dialog(page)
    await page.get_by_role("button", name="Delete").click()
    await page.wait_for_url("**/my-images?deleted=1")
    assert dialogs == ["Delete this image for good? This cannot be undone."]
    await expect(page.get_by_role("status")).to_have_text("The image was deleted.")
    await expect(page.locator(f'a[href="/image/{image_id}"]')).to_have_count(0)
    await screenshot(page, "my-images-after-delete")

    gone = await page.goto(f"/image/{image_id}")
    assert gone is not None
    assert gone.status == 404
    await expect(page.get_by_role("heading", name="Not found")).to_be_visible()
    await screenshot(page, "image-not-found")


async def test_anonymous_upload_shows_the_delete_token_and_deleting_with_it_works(page: Page) -> None:
    await page.goto("/upload")
    await expect(page.get_by_text("you will get a delete token")).to_be_visible()
    await _choose_file(page, "anonymous.png", "image/png", make_png(300, 200))
    await page.get_by_role("button", name="Upload", exact=True).click()

    await expect(page.get_by_text(WARNING)).to_be_visible()
    token_field = page.get_by_label("Delete token")
    delete_token = await token_field.input_value()
    assert len(delete_token) >= 40
    await page.get_by_role("button", name="Copy", exact=True).click()
    await expect(page.get_by_role("button", name="Copied!")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == delete_token
    await screenshot(page, "upload-anonymous-token")

    await page.get_by_role("link", name="Open the image page").click()
    await page.wait_for_url(IMAGE_PAGE)
    assert delete_token not in await page.content()  # shown once, on the upload result only
    page.on("dialog", lambda dialog: dialog.accept())

    await page.get_by_label("Delete token").fill("not-the-token")
    await page.get_by_role("button", name="Delete").click()
    await expect(page.locator("#delete-result")).to_have_text("The delete token does not match this image.")
    await screenshot(page, "image-page-wrong-delete-token")

    await page.get_by_label("Delete token").fill(delete_token)
    await page.get_by_role("button", name="Delete").click()
    await page.wait_for_url("**/?deleted=1")
    await expect(page.get_by_role("status")).to_have_text("The image was deleted.")


async def test_login_with_a_wrong_password_shows_the_error_then_the_right_one_follows_next(
    page: Page, live_server: LiveServer
) -> None:
    account = await create_account(live_server, "login")
    await page.goto("/login?next=/my-images")
    await page.get_by_label("Email").fill(account.email)
    await page.get_by_label("Password").fill("not my password")
    await page.get_by_role("button", name="Log in").click()
    await expect(page.get_by_role("alert")).to_have_text("Incorrect email or password.")
    await expect(page.get_by_label("Email")).to_have_value(account.email)
    await expect(page.get_by_label("Password")).to_have_value("")
    await screenshot(page, "login-wrong-password")

    await page.get_by_label("Password").fill("correct horse battery")
    await page.get_by_role("button", name="Log in").click()
    await page.wait_for_url("**/my-images")
    await expect(page.get_by_role("heading", name="My images")).to_be_visible()
    # The session cookie is HttpOnly: no script on the page can read it.
    assert "chitram_session" not in await page.evaluate("document.cookie")
    cookies = {cookie["name"]: cookie for cookie in await page.context.cookies()}
    assert cookies["chitram_session"]["httpOnly"] is True
    assert cookies["chitram_session"]["sameSite"] == "Lax"

    await page.get_by_role("button", name="Log out").click()
    await expect(page.get_by_role("link", name="Log in")).to_be_visible()
    assert "chitram_session" not in {cookie["name"] for cookie in await page.context.cookies()}


async def test_a_phone_photo_the_browser_cannot_name_or_show_is_uploaded_all_the_same(page: Page) -> None:
    """Browsers often give a HEIC file no type and cannot preview it: the server decides from its bytes."""
    await page.goto("/upload")
    await _choose_file(page, "IMG_4032.HEIC", "", corpus_bytes("heic_exif_gps_xmp_orientation_6.heic"))
    await expect(page.locator("#client-error")).to_be_hidden()
    await expect(page.locator("#preview")).to_be_hidden()  # no broken preview image
    await page.get_by_role("button", name="Upload", exact=True).click()
    result = page.locator("#upload-result")
    await expect(result.get_by_role("link", name="Open the image page")).to_be_visible()
    await result.get_by_role("link", name="Open the image page").click()
    await expect(page.get_by_role("heading", name="IMG_4032.HEIC")).to_be_visible()
    await expect(page.locator("dd", has_text="image/heic")).to_be_visible()
    # Shown converted, once read (a page that came before the thumbnail job asks again until then).
    picture = page.get_by_role("img", name="IMG_4032.HEIC")
    await expect(picture).to_be_visible()
    await picture.evaluate("img => img.decode()")
    assert await picture.evaluate("img => img.naturalWidth") > 0
    await expect(page.locator(".picture-placeholder")).to_be_hidden()


async def test_the_upload_form_explains_what_it_refuses_in_words(page: Page) -> None:
    await page.goto("/upload")
    error = page.locator("#client-error")
    upload_button = page.get_by_role("button", name="Upload", exact=True)

    await _choose_file(page, "notes.txt", "text/plain", b"not an image")
    await expect(error).to_have_text(
        "Only JPEG, PNG, WebP, GIF, AVIF or HEIC images can be uploaded; this file is text/plain."
    )
    await expect(upload_button).to_be_disabled()
    await screenshot(page, "upload-refused-type")

    await _choose_file(page, "huge.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(3 * 1024 * 1024))
    await expect(error).to_have_text("This file is 3.0 MB; the limit is 2.0 MB.")
    await expect(upload_button).to_be_disabled()
    await _choose_file(page, "just-over.jpg", "image/jpeg", b"\xff\xd8\xff" + bytes(2 * 1024 * 1024))
    await expect(error).to_have_text("This file is 2,097,155 bytes; the limit is 2,097,152 bytes.")

    # Passes the browser's check (type and size) but not the server's: the server's words are shown.
    await _choose_file(page, "fake.jpg", "image/jpeg", b"\xff\xd8\xff\xe0 this is no JPEG at all")
    await expect(error).to_be_hidden()
    await upload_button.click()
    result = page.locator("#upload-result")
    await expect(result).to_contain_text("Upload failed: ")
    text = await result.inner_text()
    assert "[object Object]" not in text
    assert "{" not in text

    # An answer in the API's JSON envelope (a rate limit) is shown by its message, not as JSON.
    async def rate_limited(route: Route) -> None:
        body = '{"detail": {"code": "RATE_LIMIT_EXCEEDED", "message": "Too many requests; slow down.", "details": {}}}'
        await route.fulfill(status=429, content_type="application/json", body=body)

    await page.route("**/upload", rate_limited)
    await _choose_file(page, "fine.png", "image/png", make_png())
    await expect(page.locator("#file-name")).to_have_text(re.compile(r"^fine\.png \(\d+ (bytes|KB)\)$"))
    await upload_button.click()
    await expect(result).to_have_text("Too many requests; slow down.")
