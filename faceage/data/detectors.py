"""The face detectors' names and the default one, without importing dlib (the commands read them to parse a command
line). BlazeFace is the default: on the detection benchmark it is faster than HOG on every set and finds more of the
large faces (``benchmarks/detection.json``; ``benchmarks/RESULTS.md``, "Detection on photos")."""

DETECTORS = ("hog", "cnn", "blazeface")
DEFAULT_DETECTOR = "blazeface"
