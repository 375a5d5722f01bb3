"""The async helpers the backends with async clients share (fsspec's, obstore's).

:func:`gather_bounded` is the one bounded gather of the bulk operations;
:func:`run_sync` runs a coroutine from the synchronous API on a loop of its own
(the fsspec backend runs its coroutines on fsspec's IO loop instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["gather_bounded", "run_sync"]

_T = TypeVar("_T")


async def gather_bounded(awaitables: Iterable[Awaitable[_T]], limit: int) -> list[_T]:
    """Await every one, ``limit`` at a time, results in order; then raise the first error.

    Every awaitable runs to its end before any error is raised, so a failed
    bulk operation never leaves requests running behind the caller's back.
    """
    gate = asyncio.Semaphore(limit)

    async def one(awaitable: Awaitable[_T]) -> _T:
        async with gate:
            return await awaitable

    results = await asyncio.gather(*(one(a) for a in awaitables), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return [r for r in results if not isinstance(r, BaseException)]


def run_sync(make: Callable[[], Awaitable[_T]], *, thread_name: str) -> _T:
    """Run ``make()`` to completion from synchronous code.

    On a fresh event loop in this thread, or, when this thread already runs
    one (the synchronous API called from async code), on a helper thread named
    ``thread_name``.
    """

    async def main() -> _T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with ThreadPoolExecutor(1, thread_name_prefix=thread_name) as helper:
        return helper.submit(asyncio.run, main()).result()
