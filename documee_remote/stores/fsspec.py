"""An alias of :mod:`documee_remote.stores._fsspec`, where ``FsspecStore`` lives now.

Kept because this public module's ``__all__`` offered these names; new code
imports ``FsspecStore`` from :mod:`documee_remote.stores`. The backend's own
module is private so that its name no longer shadows the ``fsspec`` package.
"""

from __future__ import annotations

from ._fsspec import S3_OPTION_NAMES, FsspecStore, s3fs_storage_options, translate_error

__all__ = ["S3_OPTION_NAMES", "FsspecStore", "s3fs_storage_options", "translate_error"]
