"""What the app's tabs and API do with a photo: the faces table, the over-N check, the annotated image and heatmaps,
and "who is older" (:func:`compare_result`, one P(older) for the tab and the ``/compare`` endpoint)."""

from __future__ import annotations

from typing import Any

from PIL import Image

from faceage.app.uploads import NO_FACE, UploadError, check_upload
from faceage.data.images import ImageLoadError
from faceage.inference.annotate import annotate, number_image
from faceage.inference.predictor import format_age
from faceage.models.pair_scores import p_older, p_older_method


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
    photo = check_upload(image)
    faces = predictor.predict(photo)
    if not faces:
        return photo, f"**0 faces found.** {NO_FACE}", None
    heat = None
    if show_heatmap and explainer is not None:
        from faceage.inference.explain import explain_faces, overlay_heatmap, tile

        found = explain_faces(photo, explainer, predictor.detector if predictor.detect else None)

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


