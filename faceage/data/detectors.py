"""The face detectors' names and the default one, without importing dlib (the commands read them to parse a command
line). YuNet is the default: on FairFace's photos (heads turned, rolled, partly hidden) it finds the labelled face in
all 270 where BlazeFace finds 227, and on the detection benchmark it finds more faces, faster, with no false hit
(``benchmarks/photo_faces.json``, ``benchmarks/detection_yunet.json``; ``benchmarks/RESULTS.md``, "Photos as people
take them")."""

DETECTORS = ("hog", "cnn", "blazeface", "yunet")
DEFAULT_DETECTOR = "yunet"
