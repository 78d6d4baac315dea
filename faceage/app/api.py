"""The app's API for programs: named Gradio endpoints ``/predict``, ``/verify`` and ``/compare`` that answer JSON.

    >>> from gradio_client import Client, handle_file
    >>> client = Client("http://127.0.0.1:7860/")
    >>> client.predict(handle_file("photo.jpg"), api_name="/predict")
    {"faces": [{"face": 0, "number": 1, "box": [l, t, r, b], "age": 31.0, "interval": [24.0, 40.0], "level": 0.9,
                "gender": "female", "gender_p": 0.93, "race": null, "race_p": null}], "level": 0.9, "calibrated": false}
    >>> client.predict(handle_file("photo.jpg"), 18, api_name="/verify")
    {"over": 18, "policy": "policy: over 18 when ...", "faces": [{..., "decision": "pass", "p_over": 0.998, "rule": "..."}]}
    >>> client.predict(handle_file("a.jpg"), handle_file("b.jpg"), api_name="/compare")
    {"p_left_older": 0.81, "left_age": 41.0, "right_age": 30.0, "method": "age distributions"}

``face`` is the face's index as in ``faceage predict`` rows (largest face first); ``number`` (``face + 1``) is the
number drawn on the app's annotated image and heatmaps and shown in its table, so a program can match JSON face
``i`` to the picture. A bad upload or a photo without a face raises a ``gradio.Error`` whose message the client
sees (``gradio_client`` raises ``AppError`` with it); a photo without a face gives ``{"faces": []}`` for
``/predict`` and ``/verify``.

The endpoints are wired by :func:`add_api` onto hidden components of the app built by
:func:`faceage.app.server.build_app`; they share the model's one-request-at-a-time queue with the UI.
"""

from __future__ import annotations

from typing import Any


from faceage.app.handlers import compare_result, over_check
from faceage.app.uploads import UploadError, check_upload

API_NAMES = ("predict", "verify", "compare")


def face_json(face: Any, level: float = 0.9) -> dict[str, Any]:
    """A :class:`faceage.inference.predictor.FaceResult` as plain JSON values (``number`` = ``face + 1``)."""
    return {"face": int(face.face), "number": int(face.face) + 1, "box": [int(v) for v in face.box], "age": float(face.age),
            "interval": None if face.interval is None else [float(face.age_low), float(face.age_high)], "level": float(level),
            "gender": face.gender, "gender_p": None if face.gender_p is None else float(face.gender_p),
            "race": face.race, "race_p": None if face.race_p is None else float(face.race_p)}


def predict_json(predictor: Any, image: Any) -> dict[str, Any]:
    """``/predict``: every face of the photo (box, age, interval, gender, race). Raises ``UploadError``."""

    level = float(getattr(predictor, "level", 0.9))
    faces = predictor.predict(check_upload(image))
    return {"faces": [face_json(f, level) for f in faces], "level": level,
            "calibrated": getattr(predictor, "calibration", None) is not None}


def verify_json(predictor: Any, image: Any, over: int = 18) -> dict[str, Any]:
    """``/verify``: each face's over-``over`` decision (``pass``/``refer``), ``P(age >= over)`` and the policy line
    (the model's fitted policy, else challenge age 25, as in the app's "Over 18?" check). Raises ``UploadError``."""

    over = int(over)
    level = float(getattr(predictor, "level", 0.9))
    faces = predictor.predict(check_upload(image))
    decisions, policy = over_check(predictor, faces, over)
    if decisions is None:
        raise UploadError(policy)
    out = []
    for f, d in zip(faces, decisions):
        out.append({**face_json(f, level), "decision": d.decision, "p_over": None if d.p_over is None else float(d.p_over),
                    "rule": d.rule, "policy_name": d.policy})
    return {"over": over, "policy": policy, "faces": out}


def compare_json(predictor: Any, left: Any, right: Any, comparer: Any = None) -> dict[str, Any]:
    """``/compare``: P(the left photo's largest face is older) and both ages, as the "Who is older?" tab computes
    them (:func:`faceage.app.handlers.compare_photos`). Raises ``UploadError``."""
    return compare_result(predictor, left, right, comparer)


def add_api(gr: Any, predictor: Any, comparer: Any = None, image_input: Any = None, concurrency_id: str | None = None) -> None:
    """Adds the ``/predict``, ``/verify`` and ``/compare`` endpoints to the ``gr.Blocks`` being built (call inside
    its ``with`` block). Their components are hidden: the UI is unchanged. ``image_input(label, elem_id)`` makes the
    upload components (default ``gr.Image(type="pil")``)."""
    def run(fn, *args):
        try:
            return fn(*args)
        except UploadError as e:
            raise gr.Error(str(e)) from None

    def make_image(label: str) -> Any:
        if image_input is not None:
            return image_input(label, f"api-{label}")
        return gr.Image(label=label, type="pil", image_mode=None)

    with gr.Column(visible=False):
        photo, left, right = make_image("photo"), make_image("left"), make_image("right")
        over = gr.Number(value=18, precision=0, label="over")
        answer = gr.JSON(label="answer")
        buttons = [gr.Button(f"api-{name}", visible=False) for name in API_NAMES]

    def predict(image: Any) -> dict:
        """Every face of a photo: box, age, interval, gender, race (JSON)."""
        return run(predict_json, predictor, image)

    def verify(image: Any, over_age: float) -> dict:
        """Over-N decision per face (pass / refer), P(age >= N) and the policy line (JSON)."""
        return run(verify_json, predictor, image, int(over_age if over_age is not None else 18))

    def compare(left_image: Any, right_image: Any) -> dict:
        """P(left face older) and both ages (JSON)."""
        return run(compare_json, predictor, left_image, right_image, comparer)

    wiring = {"predict": (predict, [photo]), "verify": (verify, [photo, over]), "compare": (compare, [left, right])}
    for button, name in zip(buttons, API_NAMES):
        fn, inputs = wiring[name]
        button.click(fn, inputs, [answer], api_name=name, concurrency_id=concurrency_id)
