"""The Gradio app: handler logic in Python, and the real page driven in headless Debian Chromium with Playwright.

The browser test uploads skimage's astronaut (one face), reads the age from the page, saves a screenshot to
``docs/screenshot_app.png``, then sends a non-image and an oversized file, checks that each gets a clear
message, and that the next valid photo is still served. It is skipped when Chromium or Playwright is missing.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("gradio", reason="gradio is not installed")

from faceage.app import handlers, server, uploads  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "screenshot_app.png"
UPLOAD_MB = 1


@pytest.fixture(scope="module")
def predictor(tiny_model_dir):
    """The bundled model when it is there (a meaningful screenshot), else the tiny untrained test model."""
    import torch

    from faceage.inference.predictor import Predictor
    from faceage.models.pretrained import BUNDLED_DIR

    torch.set_num_threads(1)
    model = BUNDLED_DIR if (BUNDLED_DIR / "config.json").exists() else tiny_model_dir
    return Predictor(model, workers=1)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("app") / "astronaut.jpg"
    Image.fromarray(data.astronaut()).save(path, quality=90)
    return path


# ----------------------------------------------------------------------------------------------- handlers


def test_check_upload():
    with pytest.raises(uploads.UploadError, match="upload a photo"):
        uploads.check_upload(None)
    with pytest.raises(uploads.UploadError, match="not a usable image"):
        uploads.check_upload(uploads.BadUpload())
    with pytest.raises(uploads.UploadError, match="too small"):
        uploads.check_upload(Image.new("RGB", (4, 4)))
    img = Image.new("L", (40, 30), 7)
    out = uploads.check_upload(img)
    assert out.mode == "RGB" and out.size == (40, 30)


def test_p_older_is_one_function_for_the_app_and_compare():
    from faceage.inference.compare import FaceComparer
    from faceage.models.pair_scores import p_older

    a = {"age": np.float32(40), "distribution": np.eye(5)[3]}
    b = {"age": np.float32(20), "distribution": np.eye(5)[1]}
    assert p_older(a, b) == 1.0 and p_older(b, a) == 0.0
    assert p_older(a, a) == 0.5  # ties count half
    assert p_older({"age": 30.0}, {"age": 30.0}) == pytest.approx(0.5)
    # a head without a distribution: a logistic on the age gap, 2 years per unit, in the app and in compare alike
    gap4 = p_older({"age": 34.0}, {"age": 30.0})
    assert gap4 == pytest.approx(1 / (1 + np.exp(-2.0)))
    comparer = FaceComparer.__new__(FaceComparer)
    comparer.age_scale = 2.0
    assert comparer.p_from_age_outputs({"age": np.array([34.0])}, {"age": np.array([30.0])})[0] == pytest.approx(gap4)


def test_handlers_without_detection(tiny_model_dir):
    import torch

    from faceage.inference.predictor import Predictor

    torch.set_num_threads(1)
    predictor = Predictor(tiny_model_dir, detect=False, workers=1)
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    annotated, text, heat = handlers.analyse_photo(predictor, face)
    assert annotated.size == face.size and text.startswith("**1 face found**") and heat is None
    age = float(re.search(r"\| 1 \| ([\d.]+) \|", text).group(1))
    assert age == pytest.approx(predictor.predict(face)[0].age, abs=0.05)
    verdict = handlers.compare_photos(predictor, face, face)
    assert "Too close to call" in verdict and "P(left older) = 50%" in verdict
    with pytest.raises(uploads.UploadError, match="Right photo"):
        handlers.compare_photos(predictor, face, None)


# ------------------------------------------------------------------------------------------------ browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_text(page, selector: str, pattern: str, timeout_s: float = 60) -> str:
    """Polls the element's text until ``pattern`` (regex) matches; returns the text."""
    deadline = time.monotonic() + timeout_s
    text = ""
    while time.monotonic() < deadline:
        loc = page.locator(selector)
        text = loc.first.inner_text() if loc.count() else ""
        if re.search(pattern, text):
            return text
        time.sleep(0.25)
    raise AssertionError(f"{selector}: {pattern!r} did not appear within {timeout_s}s; text was {text!r}")


def _upload(page, path: Path) -> None:
    clear = page.locator("#photo button[aria-label='Clear'], #photo button[title='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#photo input[type=file]").set_input_files(str(path))


@pytest.mark.slow  # end to end in headless Chromium (its own 90 s bound)
def test_app_in_browser(predictor, astronaut, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    from faceage.inference.explain import Explainer

    start = time.monotonic()
    demo = server.build_app(predictor, Explainer(predictor), max_upload_mb=UPLOAD_MB)
    port = _free_port()
    _, url, _ = server.launch(demo, port=port, max_upload_mb=UPLOAD_MB, block=False, quiet=True)
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("this is a text file, not a photo\n" * 20)
    oversized = tmp_path / "huge.jpg"
    oversized.write_bytes(os.urandom(int((UPLOAD_MB + 0.5) * 1024 * 1024)))
    try:
        with sync_api.sync_playwright() as p:
            context = p.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync"],
                viewport={"width": 1280, "height": 800},
            )
            try:
                page = context.new_page()
                page.goto(url, wait_until="domcontentloaded")
                page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)

                # 1. a real photo: one face, an age on the page
                _upload(page, astronaut)
                text = _wait_text(page, "#summary", r"\d+ faces? found")
                assert int(re.search(r"(\d+) faces? found", text).group(1)) == 1
                ages = [float(a) for a in re.findall(r"^\s*1\s+(\d+(?:\.\d+)?)\s", text, flags=re.M)]
                assert len(ages) == 1 and 0 <= ages[0] <= 120, text
                page.wait_for_selector("#annotated img", timeout=30_000)
                page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
                if os.environ.get("FACEAGE_UPDATE_SCREENSHOT") or not SCREENSHOT.exists():
                    # the README's picture: refreshed on request only, so a test run leaves the tree clean
                    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(tmp_path / "app.png", SCREENSHOT)
                assert (tmp_path / "app.png").stat().st_size > 10_000

                # 1b. the Grad-CAM option adds a heatmap image
                page.locator("#heatmap-toggle input[type=checkbox]").check()
                page.locator("#estimate").click()
                page.wait_for_selector("#heatmap img", timeout=60_000)

                # 2. a text file named .jpg: a clear message in the results, no traceback
                _upload(page, not_image)
                text = _wait_text(page, "#summary", r"not a usable image")
                assert "Traceback" not in page.content()

                # 3. too large: refused before upload with Gradio's size message
                _upload(page, oversized)
                _wait_text(page, "body", r"exceed the maximum allowed size", timeout_s=20)

                # 4. the server still answers the next valid photo
                _upload(page, astronaut)
                text = _wait_text(page, "#summary", r"1 face found")
                assert float(re.findall(r"^\s*1\s+(\d+(?:\.\d+)?)\s", text, flags=re.M)[0]) == pytest.approx(ages[0])

                # 5. who is older: the same photo twice is a toss-up
                page.get_by_role("tab", name="Who is older?").click()
                page.locator("#left input[type=file]").set_input_files(str(astronaut))
                page.locator("#right input[type=file]").set_input_files(str(astronaut))
                page.wait_for_selector("#right img", timeout=30_000)
                page.locator("#compare").click()
                _wait_text(page, "#verdict", r"Too close to call")
            finally:
                context.close()
        # the byte cap holds for clients that skip the page's own check too
        import httpx

        response = httpx.post(f"{url.rstrip('/')}/gradio_api/upload", files={"files": ("huge.jpg", oversized.read_bytes(), "image/jpeg")}, timeout=30)
        assert response.status_code == 413, response.text[:200]
    finally:
        demo.close()
    assert SCREENSHOT.stat().st_size > 10_000
    assert time.monotonic() - start < 90
