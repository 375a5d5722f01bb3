"""Alias of :mod:`documee_remote.analysis`, under the name the package had before.

Kept because users name it: ``--analyser documee_remote.analyser:reference_analyser``
(the CLI's and :func:`~documee_remote.analysis.load_analyser`'s examples), the Lambda's
``DOCUMEE_ANALYSER`` default and ``from documee_remote.analyser import ...`` in user code.
"""

from __future__ import annotations

# The alias re-exports exactly the package's public names, so the two lists cannot drift.
from . import analysis
from .analysis import *  # noqa: F403

__all__ = analysis.__all__
