"""Using a trained model: the face pipeline (``chips.py``: image -> detect + align -> preprocessed chips), the engines
(PyTorch, ONNX Runtime), ``Predictor`` (ages, calibrated intervals, over-N decisions), output rows, pair comparison,
explanations (heatmaps), annotation, video and Ray Data.

May import: ``faceage.data`` and ``faceage.models`` (the ONNX path imports neither torch nor the model classes).
"""
