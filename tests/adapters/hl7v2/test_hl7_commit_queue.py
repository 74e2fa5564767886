"""Group commit: messages in hand at the same moment share one ingest, and one bad message
still costs only its own sender (its ACK is AR, the others' are AA)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field, replace

from hl7.client import MLLPClient

from adapters.base import Batch, Unit
from adapters.hl7v2.commit_queue import CommitQueue
from adapters.hl7v2.mllp import MllpConfig, MllpListener, run_in_thread
from tests.adapters.hl7v2.test_hl7_mllp import NOW, Item, Outcome, ack_of, field_of, oru


@dataclass
class SlowIngest:
    """Takes 20 ms per batch (a commit's worth), so messages pile up meanwhile; refuses a
    whole batch with an exception when it holds a unit keyed ``poison``."""

    poison: str | None = None
    sizes: list[int] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)

    def __call__(self, batch: Batch) -> Outcome:
        time.sleep(0.02)
        if self.poison and any(u.key == self.poison for u in batch.units):
            raise RuntimeError("value too long for column")
        self.sizes.append(len(batch.units))
        self.keys += [u.key for u in batch.units]
        return Outcome([Item(True) for _ in batch.units])


def _send_all(
    port: int, senders: int, each: int, facilities: tuple[str, ...] = ("SZPH",)
) -> dict[str, str]:
    acks: dict[str, str] = {}
    lock = threading.Lock()

    def sender(n: int) -> None:
        with MLLPClient("127.0.0.1", port) as client:
            for i in range(each):
                control = f"G{n}-{i}"
                facility = facilities[n % len(facilities)]
                ack = ack_of(client.send_message(oru(control, facility=facility)))
                with lock:
                    acks[control] = field_of(ack, "MSA", 1)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return acks


def _listen_and_send(ingest: SlowIngest, *, senders: int, each: int) -> dict[str, str]:
    """A listener on a free port over ``ingest``, the senders' ACK codes by message."""
    running = run_in_thread(
        MllpListener(ingest, MllpConfig(hospital_id="szph"), clock=lambda: NOW), "127.0.0.1", 0
    )
    try:
        return _send_all(running.port, senders=senders, each=each)
    finally:
        running.stop()


def test_concurrent_senders_share_commits_and_each_gets_its_ack() -> None:
    ingest = SlowIngest()
    acks = _listen_and_send(ingest, senders=10, each=5)
    assert acks == {f"G{n}-{i}": "AA" for n in range(10) for i in range(5)}
    assert sorted(ingest.keys) == sorted(f"MSH-10 {k}" for k in acks)  # each exactly once
    assert max(ingest.sizes) > 1  # some commits held several senders' messages
    assert len(ingest.sizes) < len(acks)


def test_a_commit_holds_more_messages_than_the_worker_threads() -> None:
    """A message waiting for its commit holds no thread: with more senders than asyncio's
    pool has threads, one commit still gathers a message from nearly every sender (while a
    wait held a thread, commits never held more messages than the pool had threads)."""
    pool = min(32, (os.cpu_count() or 1) + 4)  # asyncio's default executor
    ingest = SlowIngest()
    acks = _listen_and_send(ingest, senders=pool + 8, each=4)
    assert set(acks.values()) == {"AA"} and len(acks) == (pool + 8) * 4
    assert max(ingest.sizes) > pool


def test_several_hospitals_share_one_ingest_call() -> None:
    """With ``handle_many`` a commit is one call whatever the hospitals (one transaction)."""
    calls: list[list[tuple[str, int]]] = []

    def many(batches: list[Batch]) -> list[Outcome]:
        time.sleep(0.02)
        calls.append([(b.hospital_id, len(b.units)) for b in batches])
        return [Outcome([Item(True) for _ in b.units]) for b in batches]

    def one(batch: Batch) -> Outcome:
        raise AssertionError("handle_many takes every commit")

    cfg = MllpConfig(facilities={"SZPH": "szph", "PKUSZH": "pkuszh"})
    running = run_in_thread(MllpListener(one, cfg, clock=lambda: NOW, handle_many=many), port=0)
    try:
        acks = _send_all(running.port, senders=8, each=3, facilities=("SZPH", "PKUSZH"))
    finally:
        running.stop()
    assert set(acks.values()) == {"AA"} and len(acks) == 24
    assert sum(n for call in calls for _, n in call) == 24
    assert any({h for h, _ in call} == {"szph", "pkuszh"} for call in calls)
    assert all(len({h for h, _ in call}) == len(call) for call in calls)  # a batch per hospital


def test_a_batch_refused_as_a_whole_is_retried_unit_by_unit() -> None:
    ingest = SlowIngest(poison="MSH-10 G3-2")
    acks = _listen_and_send(ingest, senders=8, each=4)
    assert acks.pop("G3-2") == "AR"  # the sender is asked to send it again
    assert set(acks.values()) == {"AA"}
    assert sorted(ingest.keys) == sorted(f"MSH-10 {k}" for k in acks)


def test_close_commits_what_is_queued_and_a_later_submit_still_works() -> None:
    seen: list[int] = []

    def ingest(batches: list[Batch]) -> list[Outcome]:
        seen.extend(len(batch.units) for batch in batches)
        return [Outcome([Item(True) for _ in batch.units]) for batch in batches]

    queue = CommitQueue(ingest, "lis-mllp")
    unit = Unit(key="k1", entries=())
    assert queue.submit("szph", unit).ok
    queue.close()
    assert queue.submit("szph", Unit(key="k2", entries=())).ok  # restarts its thread
    queue.close()
    assert seen == [1, 1]


def test_check_runs_in_the_mapping_threads_before_the_commit() -> None:
    """``check`` (the exchange passes Ingestor.checked) sees each unit before it is queued,
    off the committing thread, and what it returns is what the commit gets."""
    checked_in: set[str] = set()

    def check(unit: Unit) -> Unit:
        checked_in.add(threading.current_thread().name)
        return replace(unit, issues=())

    committed: list[Unit] = []

    def ingest(batch: Batch) -> Outcome:
        committed.extend(batch.units)
        return Outcome([Item(True) for _ in batch.units])

    listener = MllpListener(ingest, MllpConfig(hospital_id="szph"), clock=lambda: NOW, check=check)
    running = run_in_thread(listener, port=0)
    try:
        acks = _send_all(running.port, senders=4, each=3)
    finally:
        running.stop()
    assert set(acks.values()) == {"AA"} and len(committed) == 12
    assert all(u.issues == () for u in committed)
    assert checked_in and "mllp-commit" not in checked_in
