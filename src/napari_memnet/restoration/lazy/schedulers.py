"""Where dask runs the blocks of a lazy restoration.

Schedulers (the ``scheduler`` argument / ``--scheduler`` option):

* ``None`` or ``"threads"``: dask's local thread pool (the default);
* ``"synchronous"`` (or ``"sync"``): one block after the other in the calling
  thread (debugging, exact reproducibility of the order);
* ``"tcp://HOST:PORT"`` (any ``scheme://`` address): a running
  ``dask.distributed`` scheduler; a ``distributed.Client`` object is accepted too.

``iter_blocks`` / ``run_blocks`` compute items under a scheduler with a
bounded number in flight, cancellation between items and a ``BlockError``
naming a failed block. The model reaches workers as a ``models.spec.ModelSpec``
inside each block's plan; each process builds its engine once
(``restoration.cache``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ..events import check_cancel, is_cancelled

__all__ = [
    "normalize_scheduler",
    "iter_blocks",
    "run_blocks",
    "BlockError",
    "scheduler_client",
    "n_workers",
]

LOCAL_SCHEDULERS = ("threads", "synchronous")
CONNECT_TIMEOUT_S = 10.0  # how long connecting to a scheduler address may take


# ------------------------------------------------------------------ schedulers
def normalize_scheduler(scheduler) -> str | Any:
    """``"threads"``, ``"synchronous"``, a ``scheme://`` address, or a Client.

    Raises ValueError for anything else."""
    if scheduler is None:
        return "threads"
    if isinstance(scheduler, str):
        text = scheduler.strip()
        lowered = text.lower()
        if lowered in ("threads", "threaded", "thread"):
            return "threads"
        if lowered in ("synchronous", "sync", "single-threaded"):
            return "synchronous"
        if "://" in text:
            return text
        raise ValueError(
            f"unknown scheduler {scheduler!r}: expected 'threads', 'synchronous' or a dask.distributed "
            "address such as 'tcp://127.0.0.1:8786'"
        )
    if _is_client(scheduler):
        return scheduler
    raise ValueError(f"scheduler must be a string or a distributed.Client, got {type(scheduler).__name__}")


def _is_client(obj) -> bool:
    return type(obj).__name__ == "Client" and hasattr(obj, "submit") and hasattr(obj, "scheduler_info")


@contextlib.contextmanager
def scheduler_client(scheduler):
    """Yield ``(kind, client)``: kind is "threads", "synchronous" or "distributed";
    client is a ``distributed.Client`` (connected here and closed on exit when
    an address was given) or None for the local schedulers."""
    scheduler = normalize_scheduler(scheduler)
    if scheduler in LOCAL_SCHEDULERS:
        yield scheduler, None
        return
    if not isinstance(scheduler, str):
        yield "distributed", scheduler
        return
    try:
        from distributed import Client
    except ImportError:  # pragma: no cover - depends on the installation
        raise ValueError(
            f"scheduler {scheduler!r} needs dask.distributed: pip install 'napari-memnet[dask]'"
        ) from None
    try:
        client = Client(scheduler, timeout=f"{CONNECT_TIMEOUT_S}s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"cannot connect to the dask scheduler at {scheduler}: {exc}") from None
    try:
        yield "distributed", client
    finally:
        client.close()


def n_workers(kind: str, client=None) -> int:
    """How many blocks can run at once under this scheduler."""
    if kind == "synchronous":
        return 1
    if kind == "distributed":
        info = client.scheduler_info()
        workers = info.get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
    return max(1, os.cpu_count() or 1)


# ------------------------------------------------------------------ running blocks
class BlockError(RuntimeError):
    """One block (chunk) of a lazy restoration failed; ``key`` names it."""

    def __init__(self, key, cause: BaseException | str):
        self.key = key
        self.cause = cause
        what = f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
        super().__init__(f"block {key} failed: {what}")


def iter_blocks(items, scheduler=None, *, cancel=None, max_in_flight: int | None = None, retries: int = 1):
    """Compute ``items`` (an iterable of ``(key, dask_collection)``) under
    ``scheduler``; yield ``(key, value)`` in completion order.

    At most ``max_in_flight`` items run at once (default: the scheduler's
    worker threads, at least 2), so memory stays bounded by a few blocks and
    a huge image never has its whole graph submitted at once. ``cancel`` (a
    ``threading.Event``) is checked between items; when set, outstanding work
    is dropped and ``Cancelled`` (``restoration.events``) is raised.
    A failing item raises ``BlockError`` naming its key (items finished before
    were yielded). On a distributed cluster a failed task is retried
    ``retries`` times; a worker that dies is handled by dask itself (its tasks
    are rescheduled on the other workers, up to dask's
    ``distributed.scheduler.allowed-failures``; beyond that the block fails
    with a ``KilledWorker`` BlockError)."""
    import dask

    items = iter(items)
    with scheduler_client(scheduler) as (kind, client):
        window = max_in_flight or max(2, n_workers(kind, client))
        if kind == "synchronous":
            for key, item in items:
                check_cancel(cancel, "cancelled")
                try:
                    (value,) = dask.compute(item, scheduler="synchronous")
                except Exception as exc:
                    raise BlockError(key, exc) from exc
                yield key, value
            return
        if kind == "threads":
            yield from _iter_threads(items, window, cancel)
            return
        yield from _iter_distributed(client, items, window, cancel, retries)


def run_blocks(items, scheduler=None, *, on_done=None, cancel=None, max_in_flight: int | None = None,
               retries: int = 1) -> None:
    """``iter_blocks`` to the end, calling ``on_done(key, value)`` for each item."""
    for key, value in iter_blocks(items, scheduler, cancel=cancel, max_in_flight=max_in_flight, retries=retries):
        if on_done is not None:
            on_done(key, value)


def _fill_window(pending: dict, items, window: int, cancel, submit) -> None:
    """Submit (key, block) items until ``window`` futures are in flight, the
    items run out or a cancel is requested; ``pending`` maps future -> key.
    (``items`` is an iterator: once exhausted it keeps returning nothing.)"""
    while len(pending) < window and not is_cancelled(cancel):
        nxt = next(items, None)
        if nxt is None:
            return
        pending[submit(nxt[1])] = nxt[0]


def _iter_threads(items, window, cancel):
    import concurrent.futures as cf

    import dask

    def compute(item):
        return dask.compute(item, scheduler="synchronous")[0]

    pool = cf.ThreadPoolExecutor(max_workers=window, thread_name_prefix="memnet-block")
    pending: dict = {}
    try:
        while True:
            _fill_window(pending, items, window, cancel, lambda block: pool.submit(compute, block))
            if not pending:
                check_cancel(cancel, "cancelled")
                return
            done, _ = cf.wait(list(pending), timeout=0.2, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                key = pending.pop(fut)
                exc = fut.exception()
                if exc is not None:
                    raise BlockError(key, exc) from exc
                yield key, fut.result()
            check_cancel(cancel, "cancelled")
    finally:
        for fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _iter_distributed(client, items, window, cancel, retries):
    from distributed import wait

    pending: dict = {}
    try:
        while True:
            _fill_window(pending, items, window, cancel, lambda block: client.compute(block, retries=retries))
            if not pending:
                check_cancel(cancel, "cancelled")
                return
            done = wait(list(pending), timeout=None, return_when="FIRST_COMPLETED").done
            for fut in done:
                key = pending.pop(fut)
                if fut.status != "finished":
                    try:
                        exc = fut.exception()
                    except Exception as inner:  # CancelledError and friends
                        exc = inner
                    raise BlockError(key, exc)
                yield key, fut.result()
            check_cancel(cancel, "cancelled")
    finally:
        if pending:
            client.cancel(list(pending))
