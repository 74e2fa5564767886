"""Group commit for the MLLP listener: the messages in hand at one moment, one ingest.

Every MLLP sender waits for its ACK before it sends again, so a listener with twenty busy
senders holds up to twenty messages at once. Ingesting each alone pays a transaction (and
its commit), a source-id lookup and a patient resolution per message; ingesting the ones
waiting as one :class:`~adapters.base.Batch` pays those once. Ingest still judges each unit
under its own savepoint, so one bad message costs no other, and each sender gets its ACK
only after the commit that holds its message (``submit`` returns after that commit).

One thread commits; the connections' worker threads map their messages in parallel and wait
in :meth:`CommitQueue.submit`. A batch the ingest refuses as a whole (an exception) is taken
apart and each unit ingested alone, so the fault lands on the message that caused it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapters.base import Batch, Unit


class Outcome(Protocol):
    @property
    def items(self) -> Sequence[Any]: ...


@dataclass
class _Job:
    hospital: str
    unit: Unit
    done: Future[Any] = field(default_factory=Future)


class CommitQueue:
    def __init__(
        self, ingest: Callable[[Batch], Outcome], adapter: str, *, max_units: int = 200
    ) -> None:
        self.ingest = ingest
        self.adapter = adapter
        self.max_units = max_units
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def submit(self, hospital: str, unit: Unit) -> Any:
        """Ingest ``unit`` with whatever else is waiting; its per-unit outcome (an ``items``
        element) once committed, or the exception that stopped it."""
        self._ensure_running()
        job = _Job(hospital, unit)
        self._jobs.put(job)
        return job.done.result()

    def close(self) -> None:
        """Commit what is queued, then stop the committing thread."""
        with self._start_lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            thread.join()

    def _ensure_running(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mllp-commit", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs, stopping = [first], False
            while len(jobs) < self.max_units:
                try:
                    nxt = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                jobs.append(nxt)
            self._commit(jobs)
            if stopping:
                return

    def _commit(self, jobs: list[_Job]) -> None:
        by_hospital: dict[str, list[_Job]] = {}
        for job in jobs:
            by_hospital.setdefault(job.hospital, []).append(job)
        for hospital, group in by_hospital.items():
            try:
                outcome = self.ingest(Batch(hospital, self.adapter, units=[j.unit for j in group]))
                items = list(outcome.items)
                if len(items) != len(group):
                    raise RuntimeError(f"ingest answered {len(items)} of {len(group)} units")
            except Exception as exc:
                if len(group) == 1:
                    group[0].done.set_exception(exc)
                else:  # find the one at fault: each alone
                    for job in group:
                        self._commit([job])
                continue
            for job, item in zip(group, items, strict=True):
                job.done.set_result(item)
