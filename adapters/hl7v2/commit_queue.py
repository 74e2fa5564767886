"""Group commit for the MLLP listener: the messages in hand at one moment, one ingest.

Every MLLP sender waits for its ACK before it sends again, so a listener with twenty busy
senders holds up to twenty messages at once. Ingesting each alone pays a transaction (and
its commit), a source-id lookup and a patient resolution per message; ingesting the ones
waiting as one :class:`~adapters.base.Batch` pays those once. Ingest still judges each unit
under its own savepoint, so one bad message costs no other, and each sender gets its ACK
only after the commit that holds its message (``submit`` returns after that commit).

One thread commits; the connections map their messages in worker threads and wait for the
commit on the event loop (:meth:`CommitQueue.enqueue` returns a future), so no worker thread
is held while a message waits and every connected sender's message can join the next commit.
Measured with 20 senders on one core: while each wait held one of asyncio's six worker
threads, commits held about 5 messages.

A batch the ingest refuses as a whole (an exception) is taken apart and each unit ingested
alone, so the fault lands on the message that caused it.
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
        self,
        ingest: Callable[[list[Batch]], Sequence[Outcome]],
        adapter: str,
        *,
        max_units: int = 200,
    ) -> None:
        """``ingest`` takes the batches of one commit (one per hospital) and answers one
        outcome per batch: ``Ingestor.ingest_many`` writes them in one transaction."""
        self.ingest = ingest
        self.adapter = adapter
        self.max_units = max_units
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def enqueue(self, hospital: str, unit: Unit) -> Future[Any]:
        """Queue ``unit`` for the next commit; the future holds its per-unit outcome (an
        ``items`` element) once committed, or the exception that stopped it."""
        self._ensure_running()
        job = _Job(hospital, unit)
        self._jobs.put(job)
        return job.done

    def submit(self, hospital: str, unit: Unit) -> Any:
        """Ingest ``unit`` with whatever else is waiting, and wait for its outcome."""
        return self.enqueue(hospital, unit).result()

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
        groups = list(by_hospital.values())
        try:
            outcomes = self.ingest(
                [Batch(h, self.adapter, units=[j.unit for j in g]) for h, g in by_hospital.items()]
            )
            answered = [list(outcome.items) for outcome in outcomes]
            if [len(items) for items in answered] != [len(g) for g in groups]:
                raise RuntimeError("ingest did not answer every unit of the commit")
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].done.set_exception(exc)
            else:  # find the one at fault: each alone
                for job in jobs:
                    self._commit([job])
            return
        for group, items in zip(groups, answered, strict=True):
            for job, item in zip(group, items, strict=True):
                job.done.set_result(item)
