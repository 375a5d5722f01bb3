"""FsspecStore: any fsspec filesystem behind the :class:`Store` interface.

What each kind of filesystem can do, and how:

===================  =========================================  ================================
filesystem           conditional writes and deletes             ``get``: bytes and their ETag
===================  =========================================  ================================
s3fs (``s3://``)     S3's ``If-None-Match: *`` / ``If-Match``   one GetObject (S3's ETag of
                     headers: atomic on the service             exactly the bytes returned)
``file://``          delegated to :class:`LocalStore`: temp     delegated to :class:`LocalStore`
                     file + rename, checked under ``flock``
``memory://``        one lock per ``MemoryFileSystem.store``    MD5 of the bytes, same lock
                     dict, shared by every store over it
anything else        refused with ``UnsupportedOperationError``  MD5 of the bytes read
                     (``capabilities`` say so), never a
                     check-then-set race
===================  =========================================  ================================

No shared state between stores: :meth:`FsspecStore.from_url` creates its
filesystem with ``skip_instance_cache=True`` and ``use_listings_cache=False``,
so two stores never share a filesystem object, a connection pool or a stale
directory listing, even in a warm AWS Lambda container. Two exceptions are
fsspec's by design: its memory filesystem keeps one process-wide dict (pass
``storage_options={"global_store": False}`` for a private one), and its async
filesystems run on fsspec's one IO thread and event loop.

On s3fs the store calls the aiobotocore client that s3fs configured rather
than s3fs's file-system methods, because those hide what a conditional write
needs: they retry some requests themselves, ``_pipe_file`` drops ``IfMatch``
for multipart uploads and returns no ETag then, and errors come back collapsed
into ``OSError(EINVAL)`` and friends. What S3's answers mean (the error tables,
the 403 that hides a 404, the write token of conditional PUTs) is shared with
``S3Store`` in :mod:`.._s3common`, so both S3 backends behave the same. Every
failure of every filesystem is translated by :func:`translate_error`.
"""

from __future__ import annotations

# errors.py comes first: it checks that fsspec is installed, naming the extra if not.
from .errors import translate_error
from .s3options import S3_OPTION_NAMES, s3fs_storage_options
from .store import FsspecStore

__all__ = [
    "S3_OPTION_NAMES",
    "FsspecStore",
    "s3fs_storage_options",
    "translate_error",
]
