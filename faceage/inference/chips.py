"""``FaceChips``: the image side of the one way through — file -> image -> detect + align -> preprocessed chips.

Every path that needs a model's inputs from photos uses it: :class:`faceage.inference.predictor.Predictor` (predict,
verify, the app, video), the pair comparators (:class:`faceage.inference.compare.FaceComparer`) and the sensitivity
study. It depends only on the model's *input config* (chip geometry and normalisation), never on an engine.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from faceage.data.detectors import DEFAULT_DETECTOR
from faceage.data.images import load_image
from faceage.inference.preprocess import preprocess_chip

Box = tuple[int, int, int, int]


class FaceChips:
    """Image -> ``(boxes, chips)``: every face's box in the image and its aligned chip preprocessed as the model expects.

    Args:
        input_config: the model's ``config["input"]`` (``image_size``, ``mean``, ``std``, ``crop``, ``alignment``).
        detect: find and align faces with dlib; ``False`` takes the whole image as one aligned face.
        detector: ``"yunet"`` (OpenCV Zoo's, :mod:`faceage.data.yunet`; the default), ``"blazeface"``
            (MediaPipe's, :mod:`faceage.data.blazeface`), ``"hog"`` or ``"cnn"``
            (dlib's HOG or MMOD).
        thorough: BlazeFace's corner tiles on every image; HOG always upsampled, weak hits confirmed by the CNN (see
            :class:`faceage.data.detect.FaceDetector`).
    """

    def __init__(self, input_config: dict, detect: bool = True, detector: str = DEFAULT_DETECTOR, thorough: bool = False) -> None:
        self.input_config = input_config
        self.detect = detect
        self.detector_kind = detector
        self.thorough = bool(thorough)
        self._detector = None

    @property
    def detector(self):
        """The face detector + aligner for the model's chip geometry (built on first use: dlib models load once)."""
        if self._detector is None:
            from faceage.data.detect import UTKFACE_PADDING, FaceDetector

            align = self.input_config.get("alignment", {})
            self._detector = FaceDetector(
                detector=self.detector_kind,
                chip_size=int(align.get("chip_size", 200)),
                padding=float(align.get("padding", UTKFACE_PADDING)),
                landmark_model=5 if align.get("method") == "dlib5" else 68,
                thorough=self.thorough,
            )
        return self._detector

    def faces(self, image: Image.Image) -> list[tuple[Box, Image.Image]]:
        """``(box, aligned RGB chip)`` for each face of a decoded image (the whole image when not detecting)."""
        if not self.detect:
            return [((0, 0, image.width, image.height), image)]
        return [(f.box, f.chip) for f in self.detector.detect(image)]

    def preprocess(self, chips: list[Image.Image]) -> np.ndarray:
        """Aligned chips -> float32 ``(N, 3, S, S)``, the network's input."""
        if not chips:
            size = int(self.input_config["image_size"])
            return np.zeros((0, 3, size, size), np.float32)
        return np.stack([preprocess_chip(chip, self.input_config) for chip in chips])

    def __call__(self, source) -> tuple[list[Box], np.ndarray]:
        """One image (path, bytes, PIL image or uint8 array) -> ``(boxes, chips (N, 3, S, S))``. Raises
        :class:`faceage.data.images.ImageLoadError`."""
        faces = self.faces(load_image(source))
        return [box for box, _ in faces], self.preprocess([chip for _, chip in faces])
