"""An MLLP listener: HL7 v2 over TCP, one ACK per message, ingest deciding AA or AE.

MLLP (HL7 v2.5.1 Appendix C, "Minimal Lower Layer Protocol" Release 1): each message is
framed ``0x0B`` message ``0x1C 0x0D``; the receiver answers each block with one ACK in the
same framing before the sender sends the next. Many senders may be connected at once; each
connection is served by its own task and the blocking work (mapping, then ingest into the
database) runs in a worker thread (:func:`asyncio.to_thread`) so the loop keeps accepting.

A listener belongs to one hospital, or serves several on one port and tells them apart by
MSH-4 (sending facility) through ``facilities``. The exchange's ingest is passed in as
``handle``: it receives a :class:`~adapters.base.Batch` holding the message's unit (or its
dead letter) and returns per-unit outcomes, so ingest, not the listener, decides whether the
result was accepted. ``hie.ingest.Ingestor.ingest`` has exactly that shape. ``handle_many``
(``Ingestor.ingest_many``), when given, writes the messages of one group commit, whatever
their hospitals, in one transaction.

Start/stop: ``await listener.start(host, port)`` (returns the bound port, 0 picks a free one),
``listener.close()`` then ``await listener.wait_closed()``; :func:`run_in_thread` does the same
on a private event loop in a background thread for synchronous callers (the CLI, tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Protocol

from adapters.base import Batch, DeadLetter, Unit
from adapters.hl7v2 import charset
from adapters.hl7v2.ack import Header, build_ack
from adapters.hl7v2.coding import CodeMapper, Context, NoMapping
from adapters.hl7v2.commit_queue import CommitQueue
from adapters.hl7v2.framing import Framed, split_messages
from adapters.hl7v2.message import (
    INTERNAL_ERROR,
    SEGMENT_SEQUENCE,
    UNKNOWN_KEY,
    MessageError,
    V2Message,
    parse,
)
from adapters.hl7v2.oru import CONTENT_TYPE, map_oru
from adapters.hl7v2.timestamp import SHANGHAI

log = logging.getLogger(__name__)

START, END = b"\x0b", b"\x1c\x0d"
_ATTEMPTS = 4  # ingest attempts for a unit refused only because of a concurrent update


class IssueLike(Protocol):
    @property
    def diagnostics(self) -> str: ...

    @property
    def expression(self) -> str | None: ...


class ItemLike(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def issues(self) -> Sequence[IssueLike]: ...


class ResultLike(Protocol):
    """What ``handle`` returns: one item per unit of the batch, in order."""

    @property
    def items(self) -> Sequence[ItemLike]: ...


Handle = Callable[[Batch], ResultLike]
HandleMany = Callable[[list[Batch]], Sequence[ResultLike]]


def _transient(item: ItemLike | None) -> bool:
    """Refused only because another process updated the same rows at the same moment."""
    return bool(
        item is not None
        and not item.ok
        and item.issues
        and all(getattr(i, "code", None) == "conflict" for i in item.issues)
    )


@dataclass(frozen=True)
class MllpConfig:
    """One listener's settings (from a ``hl7v2-mllp`` adapter of the hospitals file)."""

    hospital_id: str | None = None  # whose messages these are when MSH-4 is not in facilities
    facilities: Mapping[str, str] = field(default_factory=dict)  # MSH-4.1 → hospital id
    adapter: str = "lis-mllp"  # Batch.adapter: names the feed in dead letters and ops
    default_charset: str = "utf-8"  # for messages with an empty MSH-18
    idle_timeout: float = 30.0  # seconds without a byte before a connection is closed
    max_message_bytes: int = 16 * 1024 * 1024


@dataclass
class Reply:
    """The decision for one block, kept for logs and tests."""

    code: str
    ack: bytes
    reason: str | None = None


@dataclass
class Pending:
    """A mapped message whose unit waits in the commit queue; ``done`` holds its outcome."""

    block: bytes
    header: Header
    msg: V2Message
    hospital: str
    unit: Unit
    done: Future[ItemLike]

    @property
    def conflict(self) -> bool:
        """Committed, but refused only for a concurrent update: settling it retries."""
        return self.done.done() and self.done.exception() is None and _transient(self.done.result())


class MllpListener:
    def __init__(
        self,
        handle: Handle,
        config: MllpConfig,
        *,
        terminology: CodeMapper | None = None,
        tz: tzinfo = SHANGHAI,
        clock: Callable[[], datetime] | None = None,
        handle_many: HandleMany | None = None,
        check: Callable[[Unit], Unit] | None = None,
    ) -> None:
        """``check``: run on each mapped unit in the mapping thread, before it is queued for a
        commit (``Ingestor.checked``: validation off the commit thread's path)."""
        self.handle = handle
        self.check = check
        self.config = config
        self.terminology = terminology or NoMapping()
        self.tz = tz
        self.clock = clock or (lambda: datetime.now(self.tz))
        self._stripes = [threading.Lock() for _ in range(64)]
        # several hospitals' messages in one commit: one transaction with ``handle_many``
        # (Ingestor.ingest_many), else one ``handle`` call each
        self._commits = CommitQueue(
            handle_many or (lambda batches: [handle(b) for b in batches]), config.adapter
        )
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 2575) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener for %s on %s:%d", self._whose(), host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        self._commits.close()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()

    def _whose(self) -> str:
        names = set(self.config.facilities.values())
        if self.config.hospital_id:
            names.add(self.config.hospital_id)
        return ", ".join(sorted(names)) or "nobody"

    # -- the connection loop ------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        buf = bytearray()
        try:
            while True:
                chunk = await asyncio.wait_for(reader.read(65536), self.config.idle_timeout)
                if not chunk:
                    break
                buf += chunk
                while True:
                    start = buf.find(START)
                    if start < 0:
                        buf.clear()  # bytes outside a block carry nothing (MLLP §C.4.2)
                        break
                    end = buf.find(END, start + 1)
                    if end < 0:
                        del buf[:start]
                        if len(buf) > self.config.max_message_bytes:
                            raise ConnectionError("block larger than max_message_bytes")
                        break
                    block = bytes(buf[start + 1 : end])
                    del buf[: end + len(END)]
                    reply = await self._answer(block)
                    writer.write(START + reply.ack + END)
                    await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            log.info("MLLP connection closed: %s", exc or type(exc).__name__)
        finally:
            self._writers.discard(writer)
            writer.close()

    # -- one block → one ACK ------------------------------------------------------------
    async def _answer(self, block: bytes) -> Reply:
        """Map in a worker thread, wait for the commit here, on the loop.

        A waiting message holds no thread, so every connected sender's message can join the
        next commit (asyncio's pool has six threads on two cores; while each wait held one,
        commits held about five messages and MLLP ran at 1.98 ms of CPU per result).
        """
        step = await asyncio.to_thread(self.prepare, block)
        if isinstance(step, Reply):
            return step
        # awaited, so a failure's copy on the loop is not left unretrieved (its finaliser
        # would log it); settle() reads the outcome, failure included, from step.done
        with contextlib.suppress(Exception):
            await asyncio.wrap_future(step.done)
        if step.conflict:  # the retry blocks: off the loop
            return await asyncio.to_thread(self.settle, step)
        return self.settle(step)

    def process(self, block: bytes) -> Reply:
        """The ACK for one MLLP block, waiting in this thread for its commit."""
        step = self.prepare(block)
        if isinstance(step, Reply):
            return step
        wait([step.done])
        return self.settle(step)

    def prepare(self, block: bytes) -> Reply | Pending:
        """Map one block and queue its unit for the next commit; a :class:`Reply` when it
        is answered without one (refused and dead-lettered). A bug in hie still answers (AR)
        instead of hanging up."""
        try:
            return self._prepare(block)
        except Exception:
            return self._failed(block)

    def settle(self, step: Pending) -> Reply:
        """The ACK for a message whose commit is done; blocks only to retry a conflict."""
        try:
            return self._settle(step)
        except Exception:
            return self._failed(step.block)

    def _failed(self, block: bytes) -> Reply:
        log.exception("MLLP listener failed on a block of %d bytes", len(block))
        framed = split_messages(block)
        return self._ack(
            Header.peek(framed[0] if framed else None),
            None,
            "AR",
            "the exchange failed on this message and has logged it; send it again later",
            None,
            INTERNAL_ERROR,
        )

    def _prepare(self, block: bytes) -> Reply | Pending:
        framed_all = split_messages(block)
        framed = framed_all[0] if framed_all else None
        if framed is None or len(framed_all) > 1:
            why = (
                "the block holds no HL7 message"
                if framed is None
                else f"the block holds {len(framed_all)} messages; MLLP carries one per block"
            )
            return self._reject(
                block, framed, MessageError(why, condition=SEGMENT_SEQUENCE, reject=True)
            )
        try:
            msg = parse(framed, self.config.default_charset)
        except MessageError as exc:
            return self._reject(block, framed, exc)
        header = Header.of(msg)
        hospital = self._hospital(msg)
        if hospital is None:
            unknown = MessageError(
                f"sending facility {msg.sending_facility!r} (MSH-4) is not served on this port",
                location="MSH-4",
                condition=UNKNOWN_KEY,
                reject=True,
            )
            return self._reject(block, framed, unknown, header)
        key = f"MSH-10 {msg.control_id}" if msg.control_id else f"MLLP block of {len(block)} bytes"
        try:
            unit = map_oru(msg, Context(hospital, self.terminology, self.tz), framed.raw, key)
        except MessageError as exc:
            return self._reject(block, framed, exc, header, hospital, msg)
        if self.check is not None:
            unit = self.check(unit)
        return Pending(block, header, msg, hospital, unit, self._commits.enqueue(hospital, unit))

    def _settle(self, step: Pending) -> Reply:
        header, msg, hospital, unit = step.header, step.msg, step.hospital, step.unit
        try:
            item: ItemLike | None = step.done.result()
            if _transient(item):  # refused only for a concurrent update: alone, with retries
                with self._patient_lock(unit):
                    retried = self._ingest(Batch(hospital, self.config.adapter, units=[unit]))
                item = retried.items[0] if retried.items else None
        except Exception:
            log.exception("ingest failed for %s from %s", unit.key, hospital)
            return self._ack(
                header,
                msg,
                "AR",
                "the exchange could not store the message; send it again",
                None,
                INTERNAL_ERROR,
            )
        if item is not None and item.ok:
            return self._ack(header, msg, "AA")
        issues = list(item.issues) if item is not None else []
        reason = (
            "; ".join(
                f"{i.expression}: {i.diagnostics}" if i.expression else i.diagnostics
                for i in issues
            )
            or "ingest rejected the message"
        )
        return self._ack(header, msg, "AE", reason, None, "207")

    def _patient_lock(self, unit: Unit) -> ExitStack:
        """Hold the lock stripes of the unit's patient identifiers while ingest runs.

        Two results for the same person arriving at once on different connections would
        otherwise race to create and link the same patient record, and one would fail with a
        conflict. Stripes are taken in index order, so two units can never deadlock.
        """
        keys = {
            f"{i.get('system')}|{i.get('value')}"
            for e in unit.entries
            if e.resource.get("resourceType") == "Patient"
            for i in e.resource.get("identifier", [])
        }
        stack = ExitStack()
        for n in sorted({zlib.crc32(k.encode()) % len(self._stripes) for k in keys}):
            stack.enter_context(self._stripes[n])
        return stack

    def _ingest(self, batch: Batch) -> ResultLike:
        """Ingest, retrying a unit refused only for a concurrent update (another process)."""
        for attempt in range(1, _ATTEMPTS + 1):
            result = self.handle(batch)
            transient = _transient(result.items[0] if result.items else None)
            if not transient or attempt == _ATTEMPTS:
                return result
            time.sleep(random.uniform(0.01, 0.05) * attempt)
        raise AssertionError("unreachable")  # pragma: no cover

    def _hospital(self, msg: V2Message) -> str | None:
        facility = msg.sending_facility
        for name in (facility, facility.upper()):
            if name in self.config.facilities:
                return self.config.facilities[name]
        return self.config.hospital_id

    def _reject(
        self,
        block: bytes,
        framed: Framed | None,
        exc: MessageError,
        header: Header | None = None,
        hospital: str | None = None,
        msg: V2Message | None = None,
    ) -> Reply:
        """Dead-letter what could not be mapped (so ops can see and replay it), then AE/AR."""
        owner = hospital or self.config.hospital_id or "unknown"
        raw = framed.raw if framed is not None else block
        key = f"MSH-10 {msg.control_id}" if msg is not None and msg.control_id else "MLLP block"
        dead = DeadLetter(key, raw, str(exc), CONTENT_TYPE, exc.location)
        try:
            self.handle(Batch(owner, self.config.adapter, dead_letters=[dead]))
        except Exception:
            log.exception("could not store the dead letter for %s", key)
        code = "AR" if exc.reject else "AE"
        return self._ack(
            header or Header.peek(framed), msg, code, str(exc), exc.location, exc.condition
        )

    def _ack(
        self,
        header: Header,
        msg: V2Message | None,
        code: str,
        reason: str | None = None,
        location: str | None = None,
        condition: str | None = None,
    ) -> Reply:
        text = build_ack(
            header, code, now=self.clock(), reason=reason, location=location, condition=condition
        )
        label = header.charset.split(header.enc.component)[0] if header.charset else ""
        data = charset.encode(text, label, self.config.default_charset)
        if code != "AA":
            log.warning("MLLP %s for %s: %s", code, header.control_id or "?", reason)
        return Reply(code, data, reason)


@dataclass
class RunningListener:
    """A listener on its own event loop in a daemon thread; ``stop()`` ends both."""

    listener: MllpListener
    port: int
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        async def shutdown() -> None:
            self.listener.close()
            await self.listener.wait_closed()

        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)


def run_in_thread(
    listener: MllpListener, host: str = "127.0.0.1", port: int = 2575
) -> RunningListener:
    """Start ``listener`` on a private loop in a background thread; returns once it listens."""
    loop = asyncio.new_event_loop()
    started: Future[int] = Future()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            started.set_result(loop.run_until_complete(listener.start(host, port)))
        except BaseException as exc:  # bind failure: hand it to the caller
            started.set_exception(exc)
            loop.close()
            return
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    thread = threading.Thread(target=main, name=f"mllp-{host}:{port}", daemon=True)
    thread.start()
    bound = started.result(timeout=10)
    return RunningListener(listener, bound, loop, thread)
