"""FlexNet (FlexLM) debug logs as an event source: followed live like `tail -F`, or backfilled once."""

# Each log's events go through the pool's observe_* methods (the license server already decided, so no
# limits apply), and from there into the same buffer, store and status as the REST API's events.
# How far each file was read is kept in the `flexlm_offsets` table, so a restart does not count lines twice.

import hashlib
import logging
import os
import re
import secrets
import stat
import threading
import time
from io import BufferedReader
from typing import Any

from flask import Blueprint, jsonify

from dash_app.events import InvalidName
from dash_app.licenses.pool import UnknownBorrow
from dash_app.sources.flexlm_parse import DATE, DENIED, DEQUEUED, DOWN, IN, MALFORMED, OUT, QUEUED, LineParser
from dash_app.state import FLEXLM, get_state
from dash_app.timeutil import iso_utc

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS flexlm_offsets (
    file_id TEXT PRIMARY KEY, path TEXT NOT NULL, source TEXT NOT NULL,
    fp_len INTEGER NOT NULL, fingerprint TEXT NOT NULL, offset INTEGER NOT NULL, line INTEGER NOT NULL,
    day INTEGER, last_tod INTEGER, updated_at REAL NOT NULL
);
"""

COUNTERS = (
    "lines",
    "borrows",
    "returns",
    "denials",
    "queued",
    "dequeued",
    "malformed",
    "ended_by_restart",
    "unmatched_returns",
    "clock_skew",
)
ID_PREFIX = "flexlm"
FINGERPRINT_BYTES = 1024  # a file is recognised by its first bytes, whatever its name or inode now
CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20  # a "line" longer than this is not a debug-log line; it is dropped
BACKPRESSURE_LINES = 50_000  # after this many lines, wait for the store's writer so a catch-up cannot fill memory
MAX_PENDING = 200_000  # undated lines held back while waiting for a date line
MALFORMED_LOGGED = 5
POLL_SECONDS = 0.25
_ROTATED_SUFFIX = re.compile(r"\.\d+$")


def source_id(path):
    """Return the id of the log stream `path` belongs to; rotated copies (`PATH.1`, `PATH.2`) share it."""
    stem = _ROTATED_SUFFIX.sub("", os.path.realpath(path))
    return hashlib.sha1(stem.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def _decode(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Windows license servers may write user names in the ANSI code page: decode line by line.
        return "\n".join(_decode_line(part) for part in data.split(b"\n"))


def _decode_line(raw):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


class LogIngest:
    """Applies one log stream's records to the pool: IN ends the oldest matching OUT, a daemon restart ends all of its vendor."""

    def __init__(self, pool, source, name=None, clock=time.time):
        self.pool = pool
        self.source = source
        self.name = name or source
        self.clock = clock
        self.parser = LineParser()
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.open = {}  # (vendor, feature, user, host) -> list of borrow-id groups, oldest first (rarely more than one)
        self.pending = []  # (line number, record) read before the log's date is known
        self.file_id = None
        self.line = 0
        self.last_event_at = None
        self.reference_time = None  # when the file was last written: dates undated lines if no date line comes
        self.open_borrows = 0  # licenses checked out in this log and not yet seen returned
        self._tools = {}
        # Borrow ids are self-describing and deterministic, `flexlm|source|vendor|feature|host|file:line`:
        # the same line always gives the same id, and a restart rebuilds which IN line ends which borrow
        # from the pool's active borrows alone.
        self._id_prefix = f"{ID_PREFIX}|{source}|"
        self._restored = {}  # base id -> (file id, line) of borrows still open at start
        self._replayed = set()  # restored borrows whose OUT line lies ahead in the current file
        self._restore_open()

    # ------------------------------------------------------------ ids and restart

    def _restore_open(self):
        groups: dict[str, list[Any]] = {}  # base id -> [open key, (borrowed_at, line), [ids]]
        for borrow in self.pool.active_borrows():
            parts = borrow.id.split("|")
            if len(parts) != 6 or parts[0] != ID_PREFIX or parts[1] != self.source:
                continue
            base = borrow.id.split("#", 1)[0]
            file_id, _, line = parts[5].split("#", 1)[0].partition(":")
            line_no = int(line) if line.isdigit() else 0
            key = (parts[2], parts[3], borrow.user, parts[4])
            groups.setdefault(base, [key, (borrow.borrowed_at, line_no), []])[2].append(borrow.id)
            self._restored[base] = (file_id, line_no)
        # Oldest first, as IN lines end them.
        for _base, (key, _order, ids) in sorted(groups.items(), key=lambda item: item[1][1]):
            self.open.setdefault(key, []).append(tuple(sorted(ids, key=len)))
            self.open_borrows += len(ids)

    def _born_after(self, group, line_no):
        # While lines after the last saved position are read again (after a crash), a restored borrow
        # whose OUT line is still ahead does not exist yet at this line.
        place = self._restored.get(group[0])
        return place is not None and place[0] == self.file_id and place[1] > line_no

    # ------------------------------------------------------------------- lines

    def start_file(self, file_id, line, day=None, last_tod=None):
        """Continue with a file: its id, the line number reached, and the date there when known."""
        self.file_id, self.line = file_id, line
        if day is not None:
            self.parser.day, self.parser.last_tod = day, last_tod
        self._replayed = {base for base, (f, n) in self._restored.items() if f == file_id and n > line}

    def feed(self, lines):
        """Parse and apply complete lines, in order; their events reach the buffer and the store as one batch."""
        with self.pool.recording_batch():
            self._feed(lines)

    def _feed(self, lines):
        parse = self.parser.parse
        pending = self.pending
        apply = self._apply
        now = self.clock()
        line_no = self.line
        # Most lines are an OUT or IN of one license: those are applied here, as _apply would, with the
        # lookups hoisted out of the loop; everything else (and every line read again after a crash) goes to _apply.
        fast = not self._replayed
        open_groups = self.open
        tools = self._tools
        observe_borrow, observe_return = self.pool.observe_borrow, self.pool.observe_return
        id_prefix, id_file = self._id_prefix, f"|{self.file_id}:"
        borrows = returns = unmatched = 0
        try:
            for line in lines:
                line_no += 1
                try:
                    record = parse(line)
                    if record is None:
                        continue
                    if record is MALFORMED:
                        self._malformed(line_no, line)
                        continue
                    kind, ts, _tod, vendor, feature, user, host, count, _detail = record
                    if ts is None:
                        pending.append((line_no, record))
                        if len(pending) >= MAX_PENDING:
                            log.warning("%s: no date line in %d lines; dating them from the file's time", self.name, len(pending))
                            self.line = line_no
                            self.resolve_undated(self.reference_time or now)
                        continue
                    if pending:
                        self._resolve_pending(now)  # this line gave the date
                    if not (fast and count == 1 and ts <= now):
                        apply(line_no, record, now)
                    elif kind == OUT:
                        group = (f"{id_prefix}{vendor}|{feature}|{host}{id_file}{line_no}",)
                        observe_borrow(tools.get(feature) or self._tool(feature), user, ts, group[0], host or None)
                        key = (vendor, feature, user, host)
                        groups = open_groups.get(key)
                        if groups is None:
                            open_groups[key] = [group]
                        else:
                            groups.append(group)
                        self.open_borrows += 1
                        borrows += 1
                        self.last_event_at = ts
                    elif kind == IN:
                        key = (vendor, feature, user, host)
                        groups = open_groups.get(key)
                        if not groups:
                            unmatched += 1  # checked out before this log began
                            continue
                        group = groups.pop(0)
                        if not groups:
                            del open_groups[key]
                        self.open_borrows -= len(group)
                        for borrow_id in group:
                            try:
                                observe_return(borrow_id, ts)
                                returns += 1
                            except UnknownBorrow:
                                pass  # already ended elsewhere
                        self.last_event_at = ts
                    else:
                        apply(line_no, record, now)
                except InvalidName:
                    self._malformed(line_no, line)  # a name no event may carry (see dash_app.events)
                except Exception:  # whatever one line holds, the lines after it are still read
                    self._malformed(line_no, line)
                    log.exception("%s line %d could not be applied", self.name, line_no)
        finally:
            counts = self.counts
            counts["borrows"] += borrows
            counts["returns"] += returns
            counts["unmatched_returns"] += unmatched
            counts["lines"] += len(lines)
            self.line = line_no

    def resolve_undated(self, reference):
        """Date lines still waiting for a date line as if the last of them was written at or before `reference`."""
        if not self.pending or self.parser.day is not None:
            return
        self.parser.anchor(reference)
        last = self._resolve_pending(self.clock())
        self.parser.anchor(last)  # go on from the last undated line's date and time

    def _resolve_pending(self, now):
        pending = self.pending[:]
        self.pending.clear()  # in place: feed() holds this list
        epochs = self.parser.backdate([record[2] for _, record in pending])
        for (line_no, record), ts in zip(pending, epochs):
            self._apply(line_no, (record[0], ts) + record[2:], now)
        return epochs[-1]

    def skip_line(self, text):
        """Count a line that was too long to be a debug-log line."""
        self.line += 1
        self._malformed(self.line, text)

    def _malformed(self, line_no, line):
        self.counts["malformed"] += 1
        if self.counts["malformed"] <= MALFORMED_LOGGED:
            log.warning("%s line %d is not a FlexNet debug-log line; skipped: %r", self.name, line_no, line[:200])

    def _tool(self, feature):
        tool = self._tools.get(feature)
        if tool is None:
            tool = self._tools[feature] = self.pool.tool_for_feature(feature)
        return tool

    def _apply(self, line_no, record, now):
        kind, ts, _tod, vendor, feature, user, host, count, detail = record
        if ts > now:
            # The server's clock or time zone is ahead of ours; the buffer refuses the future.
            ts = now
            self.counts["clock_skew"] += 1
        counts = self.counts
        if kind == OUT:
            base = f"{self._id_prefix}{vendor}|{feature}|{host}|{self.file_id}:{line_no}"
            if self._replayed and base in self._replayed:
                self._replayed.discard(base)  # read again after a crash: it is already counted
                return
            group = (base,) if count == 1 else (base, *(f"{base}#{k}" for k in range(1, count)))
            tool = self._tools.get(feature) or self._tool(feature)
            observe = self.pool.observe_borrow
            for borrow_id in group:
                observe(tool, user, ts, borrow_id, host or None)
            key = (vendor, feature, user, host)
            groups = self.open.get(key)
            if groups is None:
                groups = self.open[key] = []
            if self._replayed:
                # Keep file order: ahead of restored borrows whose OUT line comes later.
                at = next((i for i, g in enumerate(groups) if self._born_after(g, line_no)), len(groups))
                groups.insert(at, group)
            else:
                groups.append(group)
            self.open_borrows += count
            counts["borrows"] += count
            self.last_event_at = ts
        elif kind == IN:
            key = (vendor, feature, user, host)
            groups = self.open.get(key)
            group = None
            if groups:
                if not self._replayed:
                    group = groups.pop(0)
                else:
                    group = next((g for g in groups if not self._born_after(g, line_no)), None)
                    if group is not None:
                        groups.remove(group)
                if not groups:
                    del self.open[key]
            if group is None:
                counts["unmatched_returns"] += 1  # checked out before this log began
                return
            counts["returns"] += self._end(group, ts)
            self.last_event_at = ts
        elif kind == DENIED:
            self.pool.observe_failure(self._tools.get(feature) or self._tool(feature), user, detail, ts)
            counts["denials"] += 1
            self.last_event_at = ts
        elif kind == QUEUED:
            counts["queued"] += 1
        elif kind == DEQUEUED:
            counts["dequeued"] += 1
        elif kind == DOWN:
            # The vendor daemon (or lmgrd with all of them) stopped or started afresh: nothing is checked out any more.
            for key in [k for k in self.open if vendor is None or k[0] == vendor]:
                groups = self.open.pop(key)
                later = [g for g in groups if self._replayed and self._born_after(g, line_no)]
                if later:
                    self.open[key] = later
                for group in groups:
                    if group not in later:
                        counts["ended_by_restart"] += self._end(group, ts)
        elif kind != DATE:
            raise ValueError(f"unknown record kind {kind!r}")

    def _end(self, group, ts):
        self.open_borrows -= len(group)
        ended = 0
        for borrow_id in group:
            try:
                self.pool.observe_return(borrow_id, ts)
                ended += 1
            except UnknownBorrow:
                pass  # already ended elsewhere
        return ended


class Checkpoints:
    """The flexlm_offsets table: how far each file was read, found again by the file's first bytes."""

    def __init__(self, store):
        self.store = store
        store.ensure_schema(SCHEMA)

    def find(self, fh, size):
        """Return the stored row (file_id, offset, line, day, last_tod) of the file open as `fh`, or None."""
        rows = self.store.read(
            "SELECT file_id, fp_len, fingerprint, offset, line, day, last_tod FROM flexlm_offsets ORDER BY updated_at DESC"
        )
        prefixes = {}
        for file_id, fp_len, fingerprint, offset, line, day, last_tod in rows:
            if fp_len <= 0 or fp_len > size or offset > size:
                continue
            if fp_len not in prefixes:
                prefixes[fp_len] = _fingerprint(os.pread(fh.fileno(), fp_len, 0))
            if prefixes[fp_len] == fingerprint:
                return file_id, offset, line, day, last_tod
        return None

    def save(self, tail):
        """Queue the tail's position; it is written after the events of the lines before it."""
        ingest = tail.ingest
        self.store.submit(
            "INSERT OR REPLACE INTO flexlm_offsets "
            "(file_id, path, source, fp_len, fingerprint, offset, line, day, last_tod, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                ingest.file_id,
                tail.path,
                ingest.source,
                tail.fp_len,
                tail.fingerprint,
                tail.offset,
                ingest.line,
                ingest.parser.day,
                ingest.parser.last_tod,
                time.time(),
            ),
        )


def _fingerprint(data):
    return hashlib.sha1(data).hexdigest()


class LogTail:
    """Reads one path's complete lines into a LogIngest, like `tail -F`: across rotation, truncation and a late start."""

    def __init__(self, path, ingest, checkpoints, store):
        self.path = os.path.abspath(path)
        self.ingest = ingest
        self.checkpoints = checkpoints
        self.store = store
        self.state = "waiting"
        self.offset = 0
        self.size = 0
        self.rotations = 0
        self.truncations = 0
        self.fp_len = 0
        self.fingerprint = ""
        self._fh: BufferedReader | None = None
        self._identity = None
        self._partial = b""
        self._skipped = None  # bytes of an over-long line dropped so far, while its newline is still to come
        self._problem = None
        self._unflushed = 0

    # --------------------------------------------------------------- opening

    def open(self):
        """Open the path and seek to where it was left; return False while it does not exist (yet)."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            self.state = "waiting"
            return False
        except OSError as exc:
            self._report(f"cannot open: {exc.strerror or exc}")
            return False
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            fh.close()
            self._report("not a regular file")
            return False
        self._fh, self._identity, self._partial, self._skipped = fh, (st.st_dev, st.st_ino), b"", None
        self.size, self.fp_len, self.fingerprint = st.st_size, 0, ""
        self.ingest.reference_time, self.ingest.name = st.st_mtime, self.path
        self.store.flush(timeout=10)  # after a failed read, the position found must be the last one queued
        found = self.checkpoints.find(fh, st.st_size)
        if found is not None:
            file_id, offset, line, day, last_tod = found
            self.ingest.start_file(file_id, line, day, last_tod)
        else:
            # A file never seen: read it from its start, continuing the stream's dates.
            offset = 0
            self.ingest.start_file(secrets.token_hex(4), 0)
        self.offset = offset
        fh.seek(offset)
        self._refresh_fingerprint()
        self.state = "following"
        return True

    def fail(self, exc):
        """Close after an unexpected error; the next poll opens the file again at the saved position."""
        problem = f"reading failed: {exc}"
        if problem != self._problem:
            log.exception("FlexLM log %s: %s", self.path, problem)
        self._problem = problem
        self.state = f"error: {problem}"
        self.close()

    def _report(self, problem):
        if problem != self._problem:
            log.error("FlexLM log %s: %s", self.path, problem)
        self._problem = problem
        self.state = f"error: {problem}"

    @property
    def waiting_line(self):
        """Whether the file ends in a line without its newline yet (left for the next read)."""
        return bool(self._partial) or self._skipped is not None

    def close(self):
        """Close the file (the position is already saved)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _file(self) -> BufferedReader:
        """Return the open file; reading a tail that is not open is a mistake, as reading a closed file is."""
        if self._fh is None:
            raise ValueError(f"FlexLM log {self.path} is not open")
        return self._fh

    def _refresh_fingerprint(self):
        if self.fp_len < FINGERPRINT_BYTES:
            head = os.pread(self._file().fileno(), FINGERPRINT_BYTES, 0)
            self.fp_len, self.fingerprint = len(head), _fingerprint(head)

    # --------------------------------------------------------------- reading

    def read_available(self, progress=None):
        """Read and apply every complete line written so far; return the number of bytes read."""
        total = 0
        while True:
            data = self._file().read(CHUNK_BYTES)
            if not data:
                return total
            total += len(data)
            if progress is not None:
                progress(len(data))
            if self._skipped is not None:
                # The rest of an over-long line is dropped up to its newline: read as a line of its own, the text
                # after a cut could be anything (a forged OUT line, say).
                end = data.find(b"\n")
                if end < 0:
                    self._skipped += len(data)
                    continue
                self._end_skip(end + 1)
                data = data[end + 1 :]
            if self._partial:
                data = self._partial + data
            cut = data.rfind(b"\n") + 1
            self._partial = data[cut:]
            if cut:
                self._consume(data[:cut], cut)
            if len(self._partial) > MAX_LINE_BYTES:
                self.ingest.skip_line(self._partial[:200].decode("utf-8", "replace"))
                # The position stays at the line's start until its end is read, so a restart skips it again.
                self._skipped, self._partial = len(self._partial), b""

    def _end_skip(self, tail_bytes):
        self.offset += self._skipped + tail_bytes
        self._skipped = None

    def _consume(self, complete, nbytes):
        lines = _decode(complete).split("\n")
        lines.pop()  # the text after the last newline: empty
        self.ingest.feed(lines)
        self.offset += nbytes
        if self.fp_len < FINGERPRINT_BYTES:
            self._refresh_fingerprint()
        self._unflushed += len(lines)
        if self._unflushed >= BACKPRESSURE_LINES:
            # A long catch-up must not queue more statements than the writer can hold in memory. Waiting before
            # this chunk's position is queued means an idle writer has nothing left to write: no wait at all.
            self._unflushed = 0
            self.store.flush(timeout=60)
        if not self.ingest.pending:
            # Undated lines are not applied yet: keep the old position until they are.
            self.checkpoints.save(self)

    def finish(self):
        """Apply a last line without a newline (its writer has moved on) and date what is still undated."""
        if self._skipped is not None:
            self._end_skip(0)
        if self._partial:
            partial, self._partial = self._partial, b""
            self._consume(partial + b"\n", len(partial))
        self.settle()

    def settle(self):
        """Date lines still waiting for a date line from the file's modification time, then save the position."""
        if self.ingest.pending and self._fh is not None:
            self.ingest.resolve_undated(os.fstat(self._fh.fileno()).st_mtime)
            self.checkpoints.save(self)

    def poll(self):
        """Read what is new; notice rotation and truncation; return the number of bytes read."""
        if self._fh is None and not self.open():
            return 0
        read = self.read_available()
        try:
            st = os.stat(self.path)
        except OSError:
            st = None  # renamed away and not yet recreated: keep the old file open
        if st is not None and (st.st_dev, st.st_ino) != self._identity:
            read += self.read_available()
            self.finish()
            self.close()
            self.rotations += 1
            log.info("FlexLM log %s was rotated; following the new file", self.path)
            if self.open():
                read += self.read_available()
        elif st is not None and st.st_size < self.offset:
            self.truncations += 1
            log.info("FlexLM log %s was truncated; reading it from the start", self.path)
            self.close()
            if self.open():
                read += self.read_available()
        else:
            if st is not None:
                self.size = st.st_size
            if not read:
                self.settle()
        return read


class FlexLMFollower:
    """A background service that follows each configured debug log and feeds the pool; see GET /sources/flexlm."""

    def __init__(self, paths, pool, store, poll_seconds=POLL_SECONDS):
        self.pool = pool
        self.store = store
        self.poll_seconds = poll_seconds
        checkpoints = Checkpoints(store)
        self.tails = []
        for path in dict.fromkeys(os.path.abspath(p) for p in paths):
            ingest = LogIngest(pool, source_id(path), name=path)
            self.tails.append(LogTail(path, ingest, checkpoints, store))
        self._stop = threading.Event()
        self._thread = None
        self._cond = threading.Condition()
        self._pass_started = 0
        self._idle_pass = 0

    def start(self):
        """Start following in a daemon thread; existing lines are read first, from where the last run stopped."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="flexlm-follower", daemon=True)
            self._thread.start()

    def stop(self):
        """Stop following; the position reached is already queued for the store."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for tail in self.tails:
            tail.close()

    def wait_idle(self, timeout=10):
        """Block until a full pass over the logs that began after this call found nothing new; return True if one did."""
        deadline = time.monotonic() + timeout
        with self._cond:
            mark = self._pass_started
            while self._idle_pass <= mark:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self):
        while not self._stop.is_set():
            with self._cond:
                self._pass_started += 1
                this_pass = self._pass_started
            busy = False
            for tail in self.tails:
                try:
                    busy = tail.poll() > 0 or busy
                except Exception as exc:  # one bad log must not stop the others, nor this thread
                    tail.fail(exc)
            if not busy:
                with self._cond:
                    self._idle_pass = this_pass
                    self._cond.notify_all()
                self._stop.wait(self.poll_seconds)

    def snapshot(self):
        """Return the JSON-ready state and counters of every followed log, with totals."""
        logs = []
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        for tail in self.tails:
            ingest = tail.ingest
            counts = dict(ingest.counts)
            for name, value in counts.items():
                totals[name] += value
            open_borrows = ingest.open_borrows
            totals["open_borrows"] += open_borrows
            logs.append(
                {
                    "path": tail.path,
                    "state": tail.state,
                    "offset": tail.offset,
                    "size": tail.size,
                    "rotations": tail.rotations,
                    "truncations": tail.truncations,
                    "open_borrows": open_borrows,
                    "last_event_at": iso_utc(ingest.last_event_at) if ingest.last_event_at is not None else None,
                    **counts,
                }
            )
        return {"enabled": True, "logs": logs, "totals": totals}


bp = Blueprint("flexlm", __name__)


def follower_of(state):
    """Return the app's FlexLMFollower, or None when no log is configured."""
    return state.service(FLEXLM)


@bp.get("/sources/flexlm")
def flexlm_status():
    follower = follower_of(get_state())
    if follower is None:
        totals = dict.fromkeys(COUNTERS, 0)
        totals["open_borrows"] = 0
        return jsonify({"enabled": False, "logs": [], "totals": totals})
    return jsonify(follower.snapshot())
