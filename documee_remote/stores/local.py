"""LocalStore: the original on-disk layout, with atomic writes and a real cross-process CAS.

How a write works (``_put``):

1. The bytes go to a temporary file ``.tmp-<random>`` beside the target, are
   flushed and ``fsync``-ed. This is the slow part and holds no lock.
2. The containing directory is locked with ``flock`` (exclusive). Only now is
   the condition checked (``If-Match``: the current file's ETag;
   ``If-None-Match``: whether it exists), and the temporary file is renamed
   over the target (``os.replace``; ``os.link`` for create-only, which fails
   atomically if the name exists even for writers that do not lock).
3. The directory is ``fsync``-ed so the rename survives a power loss, and the
   lock is released.

So a conditional write is a compare-and-swap across processes, the lock is
held only for a check and a rename (never across a whole save), and a reader,
who takes no lock at all, sees either the old file or the new one, never a
partial one. A writer killed at any point leaves at most a stray ``.tmp-*``
file, which listings skip and ``LocalStore.remove_stale_temp_files`` removes.
``flock`` locks are released by the kernel when a process dies.

ETags are the MD5 of the file's bytes. Computing them means reading the file,
so the ETag is cached in an extended attribute together with the size and
mtime it belongs to; a file rewritten in place by another program (upstream
Documee truncates and rewrites) changes its mtime and the cache is ignored.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from ..errors import (
    DocumeeRemoteError,
    InvalidKeyError,
    NotFoundError,
    ObjectTooLargeError,
    PermissionDeniedError,
    StorageFullError,
    UnsupportedOperationError,
)
from .base import Capabilities, ObjectMeta, Store, StoredObject, etag_of

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LocalStore"]

_TMP_PREFIX = ".tmp-"
_ETAG_XATTR = "user.documee_remote.etag"
_CHUNK = 1 << 20


class LocalStore(Store):
    """A directory on local disk, in the original Documee layout.

    Parameters
    ----------
    root:
        The directory holding one sub-directory per codebase (upstream's
        ``.documee/analysis``). Created on first write if missing.
    fsync:
        Flush files and directories to disk on every write (default). Turning
        it off trades durability across power loss for speed.
    **options:
        ``read_only``, ``concurrency``, ``max_object_size``: see :class:`Store`.
    """

    capabilities = Capabilities(
        atomic_conditional_writes=fcntl is not None,
        conditional_delete=fcntl is not None,
    )

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, **options: object
    ) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.fsync = fsync
        self._real_root: str | None = None

    @property
    def url(self) -> str:
        return self.root.as_uri()

    # -- paths --------------------------------------------------------------------

    def _path(self, key: str) -> str:
        path = os.path.join(self.root, *key.split("/"))
        # Keys are validated (no "..", no absolute paths), but a symbolic link
        # inside the root could still lead out of it.
        real = os.path.realpath(path)
        if self._real_root is None:
            self._real_root = os.path.realpath(self.root)
        if real != self._real_root and not real.startswith(self._real_root + os.sep):
            raise InvalidKeyError(f"{key!r} resolves outside {self.url}", key=key)
        return path

    # -- reading ------------------------------------------------------------------

    def _get(self, key: str) -> StoredObject:
        path = self._path(key)
        with self._translate(key, reading=True), open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if self.max_object_size is not None and size > self.max_object_size:
                raise ObjectTooLargeError(
                    f"{key!r} is {size} bytes, over this store's limit of {self.max_object_size}",
                    key=key,
                )
            data = f.read()
        return StoredObject(data=data, etag=etag_of(data))

    def _head(self, key: str) -> ObjectMeta:
        path = self._path(key)
        with self._translate(key, reading=True), open(path, "rb") as f:
            st = os.fstat(f.fileno())
            etag = self._etag_of_open_file(f.fileno(), st)
        return ObjectMeta(
            key=key,
            etag=etag,
            size=st.st_size,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        )

    def _etag_of_open_file(self, fd: int, st: os.stat_result) -> str:
        stamp = f"{st.st_size}:{st.st_mtime_ns}:"
        try:
            cached = os.getxattr(fd, _ETAG_XATTR).decode("ascii")
        except (OSError, AttributeError, UnicodeDecodeError):
            cached = ""
        if cached.startswith(stamp):
            return cached[len(stamp) :]
        digest = hashlib.md5(usedforsecurity=False)
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, _CHUNK):
            digest.update(chunk)
        return '"' + digest.hexdigest() + '"'

    def _current_etag(self, path: str) -> str | None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            return self._etag_of_open_file(fd, os.fstat(fd))
        finally:
            os.close(fd)

    # -- writing ------------------------------------------------------------------

    def _put(self, key: str, data: bytes, *, if_match: str | None, create_only: bool) -> str:
        if (if_match is not None or create_only) and fcntl is None:  # pragma: no cover
            raise UnsupportedOperationError(
                "conditional writes on local disk need fcntl.flock (POSIX)", key=key
            )
        path = self._path(key)
        etag = etag_of(data)
        with self._translate(key):
            tmp: str | None = self._write_temp(path, data, etag)
            try:
                with self._locked_dir(os.path.dirname(path)):
                    if create_only:
                        # link() refuses an existing name atomically, even
                        # against writers that do not take our lock.
                        assert tmp is not None
                        try:
                            os.link(tmp, path)
                        except FileExistsError:
                            raise self._already_exists(key) from None
                        os.unlink(tmp)
                    else:
                        if if_match is not None and self._current_etag(path) != if_match:
                            raise self._precondition_failed(key, if_match)
                        os.replace(tmp, path)  # type: ignore[arg-type]
                    tmp = None
                    self._sync_dir(os.path.dirname(path))
            finally:
                if tmp is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
        return etag

    def _write_temp(self, path: str, data: bytes, etag: str) -> str:
        directory = os.path.dirname(path)
        for attempt in range(5):
            self._make_dirs(directory)
            tmp = os.path.join(directory, f"{_TMP_PREFIX}{uuid.uuid4().hex}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                # A concurrent delete removed the (empty) directory between
                # makedirs and open: make it again.
                if attempt == 4:
                    raise
                continue
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
                st = os.fstat(fd)
                with contextlib.suppress(OSError, AttributeError):
                    os.setxattr(
                        fd, _ETAG_XATTR, f"{st.st_size}:{st.st_mtime_ns}:{etag}".encode("ascii")
                    )
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            os.close(fd)
            return tmp
        raise AssertionError("unreachable")  # pragma: no cover

    def _make_dirs(self, directory: str) -> None:
        """``makedirs``, flushing each new directory's entry in its parent."""
        missing: list[str] = []
        while not os.path.isdir(directory):
            missing.append(directory)
            directory = os.path.dirname(directory)
        for path in reversed(missing):
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            self._sync_dir(os.path.dirname(path))

    def _delete(self, key: str, *, if_match: str | None) -> None:
        if if_match is not None and fcntl is None:  # pragma: no cover
            raise UnsupportedOperationError(
                "conditional deletes on local disk need fcntl.flock (POSIX)", key=key
            )
        path = self._path(key)
        directory = os.path.dirname(path)
        with self._translate(key):
            try:
                dir_fd = self._lock_dir(directory)
            except (FileNotFoundError, NotADirectoryError):
                if if_match is not None:
                    raise self._precondition_failed(key, if_match) from None
                return
            try:
                if if_match is not None and self._current_etag(path) != if_match:
                    raise self._precondition_failed(key, if_match)
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    return
                try:
                    self._sync_dir(directory)
                except FileNotFoundError:
                    # A concurrent delete emptied a subdirectory (``_journal/``)
                    # and removed this directory, emptied by our unlink, with it.
                    return
                self._remove_empty_dirs(directory)
            finally:
                os.close(dir_fd)  # closing the descriptor releases the lock

    def _remove_empty_dirs(self, directory: str) -> None:
        # Upstream removes a codebase's directory when it deletes it; do the
        # same for directories we emptied. A writer that loses the directory
        # between makedirs and creating its temp file retries (_write_temp).
        root = os.fspath(self.root)
        while directory != root and directory.startswith(root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def _lock_dir(self, directory: str) -> int:
        """Open ``directory`` and take its exclusive lock; close the descriptor to unlock."""
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @contextlib.contextmanager
    def _locked_dir(self, directory: str) -> Iterator[None]:
        fd = self._lock_dir(directory)
        try:
            yield
        finally:
            os.close(fd)

    def _sync_dir(self, directory: str) -> None:
        if not self.fsync:
            return
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- listing ------------------------------------------------------------------

    def _list(self, prefix: str) -> Iterator[str]:
        # Start from the deepest directory the prefix names completely.
        head, _, _ = prefix.rpartition("/")
        start = os.path.join(self.root, *head.split("/")) if head else os.fspath(self.root)
        keys: list[str] = []
        with self._translate(prefix or None):
            self._walk(start, head + "/" if head else "", prefix, keys)
        keys.sort()
        return iter(keys)

    def _walk(self, directory: str, key_prefix: str, want: str, out: list[str]) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # temporary files and anything hidden
            key = key_prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                if key.startswith(want) or want.startswith(key + "/"):
                    self._walk(entry.path, key + "/", want, out)
            elif entry.is_file(follow_symlinks=False) and key.startswith(want):
                out.append(key)

    # -- housekeeping ---------------------------------------------------------------

    def remove_stale_temp_files(self, older_than: float = 3600.0) -> int:
        """Remove temporary files left by writers that died, older than ``older_than`` seconds.

        Returns how many were removed. Younger ones may belong to a write in
        progress and are kept.
        """
        self._check_writable(".tmp")
        cutoff = time.time() - older_than
        removed = 0
        for directory, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(_TMP_PREFIX):
                    continue
                path = os.path.join(directory, name)
                with contextlib.suppress(OSError):
                    if os.lstat(path).st_mtime < cutoff:
                        os.unlink(path)
                        removed += 1
        return removed

    # -- errors -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, key: str | None, *, reading: bool = False) -> Iterator[None]:
        """The one place where OSError becomes the library's error tree."""
        try:
            yield
        except DocumeeRemoteError:
            raise
        except OSError as exc:
            raise self._translate_os_error(exc, key, reading=reading) from exc

    def _translate_os_error(
        self, exc: OSError, key: str | None, *, reading: bool
    ) -> DocumeeRemoteError:
        where = f"{key!r} in {self.url}" if key else self.url
        code = exc.errno
        # Reading "a" where only "a/b" exists is simply a missing object, as on S3.
        if code == errno.ENOENT or (reading and code in (errno.EISDIR, errno.ENOTDIR)):
            return NotFoundError(f"{where} not found", key=key)
        if code in (errno.EACCES, errno.EPERM, errno.EROFS):
            return PermissionDeniedError(f"permission denied for {where}", key=key)
        if code in (errno.ENOSPC, errno.EDQUOT):
            return StorageFullError(f"no space left on the device holding {where}", key=key)
        if code in (errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG):
            return InvalidKeyError(
                f"{where} cannot be stored on this filesystem ({os.strerror(code)}): a key "
                "and a directory of the same name cannot both exist on local disk",
                key=key,
            )
        return DocumeeRemoteError(
            f"local storage failed for {where}: {os.strerror(code) if code else exc}", key=key
        )
