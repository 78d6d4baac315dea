"""The package version, in one place: ``faceage.__version__``, ``faceage --version`` and pyproject (setuptools
reads it dynamically) all take it from here."""

__version__ = "0.1.0"
