"""The Gradio web app (``faceage serve``): :func:`faceage.app.server.build_app` and :func:`faceage.app.server.launch`.

Importing this package does not import Gradio; :mod:`faceage.app.server` imports it on first use.

May import: every library layer (``data`` to ``training``); never ``faceage.cli``.
"""
