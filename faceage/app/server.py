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
uploads are capped in bytes (Gradio's ``max_file_size``) and pixels, formats outside :data:`faceage.app.uploads.ACCEPTED_FORMATS`
are refused, and every problem (bad file, no face, too large) becomes a short message, never a traceback.

Upload cache: Gradio stores every file posted to its upload endpoint (even when no prediction runs) in its cache
folder. ``faceage serve`` gives it a private folder (:class:`faceage.app.uploads.UploadCache`, via ``GRADIO_TEMP_DIR``) bounded in total
size (``--cache-mb``, default 200) and file age (``--cache-age``, default 600 s), and deletes it on exit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


from faceage.app.handlers import analyse_photo, compare_photos
from faceage.app.uploads import ACCEPTED_TEXT, BAD_FILE, NO_FACE, BadUpload, UploadCache, UploadError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_MB = 10
CONCURRENCY_ID = "model"  # every event shares one queue slot: the model runs one request at a time
DISCLAIMER = ("Estimates are statistical guesses (typically several years off, more for children and the elderly) "
              "and differ in accuracy between groups; do not use them to make decisions about people. "
              "Uploaded photos are processed in memory for this request only.")


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
