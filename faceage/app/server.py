"""The Gradio web app of ``faceage serve`` (:mod:`faceage.cli.serve`): estimate ages in a photo (upload or webcam),
or ask who of two is older.

    faceage serve [--model M] [--host 127.0.0.1] [--port 7860] [--max-upload-mb 10]

Tab "Estimate age": the photo with every face boxed and labelled (:func:`faceage.inference.annotate.annotate`),
a table of ages with 90% intervals and gender, and optionally a Grad-CAM heatmap per face
(:mod:`faceage.inference.explain`). Tab "Who is older?": two photos -> P(left older) from the two predicted age
distributions (or a pair model's :class:`faceage.inference.compare.FaceComparer` when given).

For programs: the named API endpoints ``/predict``, ``/verify`` and ``/compare`` answer JSON
(:mod:`faceage.app.api`); faces are numbered (#1, #2, ...) on the annotated image and the heatmaps as in the table.

Safety: the handlers only ever see decoded image data (``gr.Image(type="pil")``), never a path from the user;
uploads are capped in bytes (Gradio's ``max_file_size``) and pixels, formats outside :data:`ACCEPTED_FORMATS`
are refused, and every problem (bad file, no face, too large) becomes a short message, never a traceback.

Upload cache: Gradio stores every file posted to its upload endpoint (even when no prediction runs) in its cache
folder. ``faceage serve`` gives it a private folder (:class:`UploadCache`, via ``GRADIO_TEMP_DIR``) bounded in total
size (``--cache-mb``, default 200) and file age (``--cache-age``, default 600 s), and deletes it on exit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceage.data.images import MAX_IMAGE_PIXELS, ImageLoadError, load_image
from faceage.inference.predictor import format_age
from faceage.models.pair_scores import p_older, p_older_method

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 10
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # PIL format names (MPO: phone JPEGs)
ACCEPTED_TEXT = "JPEG, PNG, WebP, BMP, GIF or TIFF"
BAD_FILE = f"This file is not a usable image. Please upload a photo in {ACCEPTED_TEXT} format."
NO_IMAGE = "Please upload a photo (or take one with the webcam) first."
NO_FACE = "No face found in this photo. Try a larger, frontal, well-lit face (or a tighter crop)."
CONCURRENCY_ID = "model"  # every event shares one queue slot: the model runs one request at a time
DISCLAIMER = ("Estimates are statistical guesses (typically several years off, more for children and the elderly) "
              "and differ in accuracy between groups; do not use them to make decisions about people. "
              "Uploaded photos are processed in memory for this request only.")


DEFAULT_CACHE_MB = 200
DEFAULT_CACHE_AGE_S = 600


class UploadCache:
    """A private Gradio upload folder bounded in total size and file age, removed by :meth:`close`.

    Gradio's ``delete_cache`` (set by :func:`launch`) deletes files by age only; nothing in Gradio bounds the total
    size, so a thread here prunes every ``interval`` seconds: files older than ``max_age_s`` go, then the oldest
    until the folder holds at most ``max_mb`` (between two passes it can exceed that by what arrives meanwhile).

    Creating it points ``GRADIO_TEMP_DIR`` at the folder (the Blocks and the server read it when they are built);
    :meth:`close` restores the previous value.
    """

    def __init__(self, max_mb: float = DEFAULT_CACHE_MB, max_age_s: float = DEFAULT_CACHE_AGE_S, parent: str | None = None,
                 interval: float = 1.0) -> None:
        if max_mb <= 0 or max_age_s <= 0:
            raise ValueError(f"upload cache limits must be > 0, got {max_mb} MB and {max_age_s} s")
        self.max_bytes, self.max_age_s, self.interval = int(max_mb * 2**20), float(max_age_s), interval
        self.dir = Path(tempfile.mkdtemp(prefix="faceage-uploads-", dir=parent))
        self._previous = os.environ.get("GRADIO_TEMP_DIR")
        os.environ["GRADIO_TEMP_DIR"] = str(self.dir)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def files(self) -> list[Path]:
        return [p for p in self.dir.rglob("*") if p.is_file()]

    def size(self) -> int:
        return sum(_file_size(p) for p in self.files())

    def prune(self) -> int:
        """One pass; returns how many files it deleted."""
        now, entries = time.time(), []
        for path in self.files():
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((st.st_mtime, st.st_size, path))
        entries.sort()  # oldest first
        total, deleted, emptied = sum(e[1] for e in entries), 0, set()
        for mtime, size, path in entries:
            if now - mtime <= self.max_age_s and total <= self.max_bytes:
                break
            try:
                path.unlink()
                emptied.add(path.parent)
                deleted += 1
                total -= size
            except OSError:
                pass
        for folder in sorted((p for p in self.dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                # Gradio makes one folder per upload, then moves the file in: leave just-made (empty) ones alone
                if folder in emptied or now - folder.stat().st_mtime > 5:
                    folder.rmdir()  # only succeeds when empty
            except OSError:
                pass
        return deleted

    def start(self) -> UploadCache:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="faceage-upload-cache", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.prune()

    def close(self) -> None:
        """Stops pruning, deletes the folder and everything in it, restores ``GRADIO_TEMP_DIR``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        shutil.rmtree(self.dir, ignore_errors=True)
        if os.environ.get("GRADIO_TEMP_DIR") == str(self.dir):
            if self._previous is None:
                os.environ.pop("GRADIO_TEMP_DIR", None)
            else:
                os.environ["GRADIO_TEMP_DIR"] = self._previous


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class UploadError(Exception):
    """A user-facing problem with an upload; ``str()`` is the message shown."""


class BadUpload:
    """Stands in for an upload Gradio could not decode, so the handler can answer with a message."""

    def __init__(self, message: str = BAD_FILE) -> None:
        self.message = message


# --------------------------------------------------------------------------------------------- validation


def check_upload(image: Image.Image | np.ndarray | None) -> Image.Image:
    """Validates an uploaded, decoded image and returns it as upright 8-bit RGB.

    Args:
        image: what ``gr.Image(type="pil")`` passed (``None`` when nothing was uploaded).

    Returns:
        RGB PIL image.

    Raises:
        UploadError: nothing uploaded, a format outside :data:`ACCEPTED_FORMATS`, too many pixels, or an image
            :func:`faceage.data.images.load_image` rejects (corrupt, truncated, too small).
    """
    if image is None:
        raise UploadError(NO_IMAGE)
    if isinstance(image, BadUpload):
        raise UploadError(image.message)
    if isinstance(image, Image.Image):
        fmt = getattr(image, "format", None)
        if fmt is not None and fmt.upper() not in ACCEPTED_FORMATS:
            raise UploadError(f"{fmt} images are not accepted. Please upload a photo in {ACCEPTED_TEXT} format.")
        w, h = image.size
    else:
        h, w = np.asarray(image).shape[:2]
    if w * h > MAX_IMAGE_PIXELS:
        raise UploadError(f"This image is too large ({w}x{h} pixels). Please upload a smaller photo.")
    try:
        return load_image(image)
    except ImageLoadError as e:
        raise UploadError(f"This image cannot be used: {e.problem}.") from None


def _gradio() -> Any:
    """Imports Gradio with its usage analytics off (no calls home; the app must work offline)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio

    return gradio


def _safe_preprocess(component: Any) -> Any:
    """Makes a ``gr.Image`` hand an undecodable upload to the handler as :class:`BadUpload` (answered with a clear
    message) instead of failing with a generic server "Error".

    Gradio decodes the upload (``PIL.Image.open``) before the handler runs. The component's own ``preprocess`` is
    wrapped on this instance only (subclassing a Gradio component would write a ``.pyi`` stub beside this module).
    """
    gr = _gradio()

    original: Callable[[Any], Any] = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except gr.Error as e:
            return BadUpload(str(e.message) if getattr(e, "message", None) else BAD_FILE)
        except Exception:  # noqa: BLE001 - whatever Pillow raised, the user just sent a bad file
            return BadUpload(BAD_FILE)

    component.preprocess = preprocess
    return component


# ------------------------------------------------------------------------------------------------ handlers


def faces_markdown(faces: list[Any], level: float = 0.9, calibrated: bool = False, decisions: list[Any] | None = None,
                   policy: str | None = None) -> str:
    """Markdown summary of :class:`FaceResult` objects: a count line and a table of ages, intervals (``level``;
    marked calibrated when the model's calibration made them), gender (and race when the model predicts it), and
    with ``decisions`` (:class:`faceage.inference.calibration.AgeDecision`) an over-N column and the ``policy`` line
    stating its measured error rates."""
    if not faces:
        return f"**0 faces found.** {NO_FACE}"
    with_race = any(f.race is not None for f in faces)
    head = f"{level:.0%} interval" + (" (calibrated)" if calibrated else "")
    over = f" over {decisions[0].over}? |" if decisions else ""
    lines = [f"**{len(faces)} face{'s' if len(faces) != 1 else ''} found**", "",
             f"| face | age | {head} | gender |" + (" race |" if with_race else "") + over,
             "|---|---|---|---|" + ("---|" if with_race else "") + ("---|" if decisions else "")]
    for i, f in enumerate(faces):
        interval = "–" if f.interval is None else f"{f.age_low:.0f}–{f.age_high:.0f}"
        gender = "–" if f.gender is None else f"{f.gender} ({f.gender_p:.0%})"
        race = ("" if not with_race else " – |" if f.race is None else f" {f.race} ({f.race_p:.0%}) |")
        check = ""
        if decisions:
            d = decisions[i]
            check = f" {d.decision}" + ("" if d.p_over is None else f" (P={d.p_over:.2f})") + " |"
        lines.append(f"| {f.face + 1} | {format_age(f.age, 1)} | {interval} | {gender} |{race}{check}")
    if decisions and policy:
        lines += ["", f"*{policy}. pass = confidently over; refer = check ID.*"]
    return "\n".join(lines)


def over_check(predictor: Any, faces: list[Any], over: int = 18) -> tuple[list[Any] | None, str]:
    """Over-``over`` decisions of the faces under the model's fitted policy (else the challenge-25 rule) and the
    policy line; ``(None, reason)`` when neither applies."""
    from faceage.inference.calibration import policy_text

    calibration = getattr(predictor, "calibration", None)
    policy = calibration.policy(over) if calibration is not None else None
    challenge = None if policy is not None else 25.0
    try:
        decisions = predictor.decisions(faces, over, challenge)
    except ValueError as e:
        return None, str(e)
    return decisions, policy_text(policy, over, challenge)


def analyse_photo(predictor: Any, image: Any, explainer: Any = None, show_heatmap: bool = False,
                  check_over: int | None = None) -> tuple[Image.Image | None, str, Image.Image | None]:
    """The "Estimate age" tab.

    Args:
        predictor: :class:`faceage.inference.predictor.Predictor`.
        image: the decoded upload.
        explainer: :class:`faceage.inference.explain.Explainer`, needed for the heatmap.
        show_heatmap: also return the Grad-CAM overlays of the faces.
        check_over: also decide "over N?" for each face (:func:`over_check`), with the policy's stated error rate.

    Returns:
        ``(annotated image or None, markdown, heatmap strip or None)``.

    Raises:
        UploadError: for an unusable upload.
    """
    from faceage.inference.annotate import annotate

    photo = check_upload(image)
    faces = predictor.predict(photo)
    if not faces:
        return photo, f"**0 faces found.** {NO_FACE}", None
    heat = None
    if show_heatmap and explainer is not None:
        from faceage.inference.explain import explain_faces, overlay_heatmap, tile

        found = explain_faces(photo, explainer, predictor.detector if predictor.detect else None)
        from faceage.app.api import number_image

        heat = tile([number_image(overlay_heatmap(chip, h), i + 1) for i, (_, chip, h) in enumerate(found)]) if found else None
    decisions, policy = over_check(predictor, faces, check_over) if check_over else (None, None)
    text = faces_markdown(faces, getattr(predictor, "level", 0.9), getattr(predictor, "calibration", None) is not None, decisions, policy)
    return annotate(photo, faces, numbered=True), text, heat


def _largest_face_output(predictor: Any, photo: Image.Image) -> dict[str, Any] | None:
    """The predictor's answer for the photo's largest face (``age`` and, where the head has one, ``distribution``),
    or ``None`` without a face."""
    boxes, chips = predictor.chips(photo)
    if not boxes:
        return None
    face = predictor.predict_chips(chips[:1], boxes[:1])[0]
    return {"age": face.age, **({"distribution": face.distribution} if face.distribution is not None else {})}


def compare_result(predictor: Any, left: Any, right: Any, comparer: Any = None) -> dict[str, Any]:
    """P(the left photo's largest face is older) and both ages: ``{"p_left_older", "left_age", "right_age",
    "method"}``, shared by the "Who is older?" tab and the ``/compare`` API. Raises ``UploadError``."""
    photos = {}
    for side, image in (("left", left), ("right", right)):
        try:
            photos[side] = check_upload(image)
        except UploadError as e:
            raise UploadError(f"{side.capitalize()} photo: {e}") from None
    outs = {side: _largest_face_output(predictor, photo) for side, photo in photos.items()}
    for side, out in outs.items():
        if out is None:
            raise UploadError(f"{side.capitalize()} photo: {NO_FACE}")
    if comparer is not None:
        try:
            p = float(comparer.p_left_older(comparer.prepare(photos["left"])[None], comparer.prepare(photos["right"])[None])[0])
        except ImageLoadError as e:
            raise UploadError(f"Cannot compare these photos: {e.problem}.") from None
        method = f"pair model ({comparer.kind})"
    else:
        p = float(p_older(outs["left"], outs["right"]))
        method = p_older_method(outs["left"])
    return {"p_left_older": float(p), "left_age": float(outs["left"]["age"]), "right_age": float(outs["right"]["age"]), "method": method}


def compare_photos(predictor: Any, left: Any, right: Any, comparer: Any = None) -> str:
    """The "Who is older?" tab: markdown saying which face looks older and how sure the model is.

    Args:
        predictor: the age predictor (ages shown; and P(older) from its distributions without a ``comparer``).
        left: decoded left upload.
        right: decoded right upload.
        comparer: optional :class:`faceage.inference.compare.FaceComparer` (e.g. a pair model) for P(older).

    Raises:
        UploadError: for an unusable upload or a photo without a face.
    """
    result = compare_result(predictor, left, right, comparer)
    p, method = result["p_left_older"], result["method"]
    a_left, a_right = result["left_age"], result["right_age"]
    if abs(p - 0.5) < 0.05:
        verdict = f"**Too close to call**: P(left older) = {p:.0%}."
    elif p > 0.5:
        verdict = f"**The left face looks older**, with probability {p:.0%}."
    else:
        verdict = f"**The right face looks older**, with probability {1 - p:.0%}."
    return (f"{verdict}\n\nEstimated ages: left {format_age(a_left, 1)}, right {format_age(a_right, 1)} (largest face of each photo; "
            f"P from {method}).")


# ------------------------------------------------------------------------------------------------------ UI


def _theme() -> Any:
    """Gradio's default theme with system fonts (no web-font downloads: the app works offline)."""
    gr = _gradio()

    return gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build_app(predictor: Any, explainer: Any = None, comparer: Any = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> Any:
    """The Gradio app around a predictor; launch it with :func:`launch` (which applies the upload cap).

    Args:
        predictor: :class:`faceage.inference.predictor.Predictor` (``detect=True`` for ordinary photos).
        explainer: :class:`faceage.inference.explain.Explainer` for heatmaps; ``None`` hides the option.
        comparer: optional :class:`faceage.inference.compare.FaceComparer` for the "Who is older?" tab.
        max_upload_mb: upload cap shown to the user (enforced by :func:`launch`).

    Returns:
        ``gr.Blocks``.
    """
    gr = _gradio()

    def image_input(label: str, elem_id: str) -> Any:
        return _safe_preprocess(gr.Image(label=label, type="pil", image_mode=None, sources=["upload", "webcam", "clipboard"],
                                         elem_id=elem_id, height=360))

    def on_analyse(image: Any, show_heatmap: bool, check18: bool = False) -> tuple[Any, str, Any]:
        try:
            annotated, text, heat = analyse_photo(predictor, image, explainer, bool(show_heatmap), 18 if check18 else None)
        except UploadError as e:
            gr.Warning(str(e))
            return None, f"⚠ {e}", gr.update(value=None, visible=False)
        if text.startswith("**0 faces"):
            gr.Warning(NO_FACE)
        return annotated, text, gr.update(value=heat, visible=heat is not None)

    def on_compare(left: Any, right: Any) -> str:
        try:
            return compare_photos(predictor, left, right, comparer)
        except UploadError as e:
            gr.Warning(str(e))
            return f"⚠ {e}"

    with gr.Blocks(title="faceage") as demo:
        gr.Markdown(f"# faceage: facial age estimation\n{DISCLAIMER}\n\nAccepted: {ACCEPTED_TEXT}, up to {max_upload_mb:g} MB.")
        with gr.Tab("Estimate age"):
            with gr.Row():
                with gr.Column():
                    photo = image_input("Photo", "photo")
                    show_heatmap = gr.Checkbox(label="Show Grad-CAM heatmap (which regions raised the age)", value=False,
                                               visible=explainer is not None, elem_id="heatmap-toggle")
                    check18 = gr.Checkbox(label="Over 18? check (pass / refer to an ID check, with its measured error rate)", value=False,
                                          elem_id="over18-toggle")
                    run = gr.Button("Estimate age", variant="primary", elem_id="estimate")
                with gr.Column():
                    annotated = gr.Image(label="Faces", type="pil", interactive=False, elem_id="annotated", height=360)
                    summary = gr.Markdown(elem_id="summary")
                    heatmap = gr.Image(label="Grad-CAM heatmap per face", type="pil", interactive=False, visible=False, elem_id="heatmap")
            for event in (photo.upload, run.click):
                event(on_analyse, [photo, show_heatmap, check18], [annotated, summary, heatmap], concurrency_id=CONCURRENCY_ID)
            photo.clear(lambda: (None, "", gr.update(value=None, visible=False)), None, [annotated, summary, heatmap])
        with gr.Tab("Who is older?"):
            with gr.Row():
                left = image_input("Left photo", "left")
                right = image_input("Right photo", "right")
            compare = gr.Button("Who is older?", variant="primary", elem_id="compare")
            verdict = gr.Markdown(elem_id="verdict")
            compare.click(on_compare, [left, right], [verdict], concurrency_id=CONCURRENCY_ID)
        from faceage.app.api import add_api

        add_api(gr, predictor, comparer, image_input, CONCURRENCY_ID)  # /predict, /verify, /compare: JSON for programs
    return demo


def launch(demo: Any, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
           block: bool = True, quiet: bool = False, cache: UploadCache | None = None) -> Any:
    """Starts the server with the upload cap, one model request at a time, and no outside resources.

    Args:
        demo: from :func:`build_app`.
        host: interface to bind (``127.0.0.1``: this machine only; ``0.0.0.0`` to serve the network).
        port: TCP port.
        max_upload_mb: largest accepted upload in megabytes.
        block: serve until interrupted; ``False`` returns once the server is up (tests).
        quiet: no start-up banner.
        cache: the :class:`UploadCache` whose folder the app was built with (``demo`` built after creating it):
            its pruning starts here, and Gradio's own ``delete_cache`` ages files out and empties it at shutdown.

    Returns:
        What ``gr.Blocks.launch`` returns (``(app, local_url, share_url)``).
    """
    demo.queue(default_concurrency_limit=1)
    if cache is not None:
        age = max(1, int(cache.max_age_s))
        demo.delete_cache = (max(1, age // 2), age)  # read when the server app is created, just below
        cache.start()
    return demo.launch(server_name=host, server_port=port, max_file_size=f"{max_upload_mb:g}mb", show_error=False,
                       ssr_mode=False, prevent_thread_lock=not block, quiet=quiet, theme=_theme(), share=False,
                       inbrowser=False)
