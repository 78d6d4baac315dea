"""faceage: train, evaluate, compare and serve facial age estimators.

Public API::

    import faceage
    predictor = faceage.Predictor()          # bundled default model
    faces = predictor.predict("photo.jpg")   # list[FaceResult]
"""

from faceage._version import __version__


def __getattr__(name: str):
    # lazy: `import faceage` must stay cheap (the ONNX engine path never imports torch)
    if name in ("Predictor", "FaceResult"):
        from faceage.inference import predictor

        return getattr(predictor, name)
    if name in ("AgeModel", "load_model", "create_backbone", "create_head"):
        from faceage import models

        return getattr(models, name)
    raise AttributeError(f"module 'faceage' has no attribute {name!r}")


__all__ = ["AgeModel", "FaceResult", "Predictor", "__version__", "create_backbone", "create_head", "load_model"]
