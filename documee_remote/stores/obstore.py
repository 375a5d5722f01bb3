"""An alias of :mod:`documee_remote.stores._obstore`, where ``ObstoreStore`` lives now.

Kept because this public module's ``__all__`` offered these names; new code
imports ``ObstoreStore`` from :mod:`documee_remote.stores`. The backend's own
module is private so that its name no longer shadows the ``obstore`` package.
"""

from __future__ import annotations

from ._obstore import (
    OBSTORE_INSTALL_HINT,
    Boto3Credentials,
    ObstoreStore,
    answer_of,
    translate_error,
)

__all__ = [
    "OBSTORE_INSTALL_HINT",
    "Boto3Credentials",
    "ObstoreStore",
    "answer_of",
    "translate_error",
]
