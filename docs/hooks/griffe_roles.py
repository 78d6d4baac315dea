"""A Griffe extension for the API pages: the Sphinx roles of faceage's docstrings (:class:`X`, :func:`~a.b`) become
Markdown code spans, which is how mkdocstrings renders the rest of their ``code``."""

from __future__ import annotations

import re

import griffe

_ROLE = re.compile(r":(?:class|func|meth|data|mod|attr|exc|obj|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrites the roles in every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        """Rewrites ``obj``'s docstring, if any."""
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
