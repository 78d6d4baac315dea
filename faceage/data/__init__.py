"""The data side: dataset readers (``readers/``, one module per dataset, a registry), records and safe image
decoding, face detection + alignment (``detect.py`` over ``yunet.py``, ``blazeface.py``, ``blazeface_boxes.py``, ``hog.py``
and ``alignment.py``) and its cached preprocessing (``prepare.py``), splits, transforms,
the decoded-chip cache and batch augmentation, the Lightning datamodules, and face pairs for "who is older".

May import: nothing else of faceage (the bottom layer; ``faceage._io`` helpers only).
"""
