"""Follow a log file like `tail -F`: complete lines handed to a consumer, across rotation, truncation and a late
start, from the position a checkpoint saved (store.checkpoints), so a restart reads no line twice."""

import logging
import os
import stat
from collections.abc import Callable
from io import BufferedReader
from typing import TYPE_CHECKING

from dash_app.sources.errors import CANNOT_OPEN, NOT_A_FILE, READING_FAILED, SourceError
from dash_app.store.checkpoints import Checkpoints, Position, fingerprint

if TYPE_CHECKING:
    from dash_app.sources.flexlm.ingest import LogIngest
    from dash_app.store.database import Store

log = logging.getLogger(__name__)

FINGERPRINT_BYTES = 1024  # a file is recognised by its first bytes, whatever its name or inode now
CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 1 << 20  # a "line" longer than this is not a log line; it is dropped
BACKPRESSURE_LINES = 50_000  # after this many lines, wait for the store's writer so a catch-up cannot fill memory


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        # Windows license servers may write user names in the ANSI code page: decode line by line.
        return "\n".join(_decode_line(part) for part in data.split(b"\n"))


def _decode_line(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


class LogTail:
    """Reads one path's complete lines into a LogIngest, like `tail -F`: across rotation, truncation and a late start."""

    def __init__(self, path: str, ingest: "LogIngest", checkpoints: Checkpoints, store: "Store") -> None:
        self.path = os.path.abspath(path)
        self.ingest = ingest
        self.checkpoints = checkpoints
        self.store = store
        self.state = "waiting"
        self.error: SourceError | None = None  # while the state is "error: ...": its kind apart from its detail
        self.offset = 0
        self.size = 0
        self.rotations = 0
        self.truncations = 0
        self.fp_len = 0
        self.fingerprint = ""
        self._fh: BufferedReader | None = None
        self._identity: tuple[int, int] | None = None
        self._partial = b""
        self._skipped: int | None = None  # bytes of an over-long line dropped so far, while its newline is still to come
        self._problem: SourceError | None = None
        self._unflushed = 0

    # --------------------------------------------------------------- opening

    def open(self) -> bool:
        """Open the path and seek to where it was left; return False while it does not exist (yet)."""
        try:
            fh = open(self.path, "rb")
        except FileNotFoundError:
            self.state, self.error = "waiting", None
            return False
        except OSError as exc:
            self._report(SourceError(CANNOT_OPEN, None, str(exc.strerror or exc)))
            return False
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            fh.close()
            self._report(SourceError(NOT_A_FILE))
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
            # A file never seen: read it from its start, continuing the stream's dates. Its id is given with its first
            # line (see _name_new_file).
            offset = 0
            self.ingest.start_file(None, 0)
        self.offset = offset
        fh.seek(offset)
        self._refresh_fingerprint()
        self.state, self.error = "following", None
        return True

    def fail(self, exc: BaseException) -> None:
        """Close after an unexpected error; the next poll opens the file again at the saved position."""
        problem = SourceError(READING_FAILED, None, str(exc))  # an exception's text may quote a line: user, host
        if problem != self._problem:
            log.exception("log %s: %s", self.path, problem.text)
        self._problem = problem
        self.state, self.error = f"error: {problem.text}", problem
        self.close()

    def _report(self, problem: SourceError) -> None:
        if problem != self._problem:
            log.error("log %s: %s", self.path, problem.text)
        self._problem = problem
        self.state, self.error = f"error: {problem.text}", problem

    @property
    def waiting_line(self) -> bool:
        """Whether the file ends in a line without its newline yet (left for the next read)."""
        return bool(self._partial) or self._skipped is not None

    def close(self) -> None:
        """Close the file (the position is already saved)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _file(self) -> BufferedReader:
        """Return the open file; reading a tail that is not open is a mistake, as reading a closed file is."""
        if self._fh is None:
            raise ValueError(f"log {self.path} is not open")
        return self._fh

    def _save_position(self) -> None:
        ingest = self.ingest
        assert ingest.file_id is not None, "a file's position is saved once its first line has named it"
        position = Position(ingest.file_id, self.offset, ingest.line, ingest.parser.day, ingest.parser.last_tod)
        self.checkpoints.save(self.path, ingest.source, self.fp_len, self.fingerprint, position)

    def _refresh_fingerprint(self) -> None:
        if self.fp_len < FINGERPRINT_BYTES:
            head = os.pread(self._file().fileno(), FINGERPRINT_BYTES, 0)
            self.fp_len, self.fingerprint = len(head), fingerprint(head)

    # --------------------------------------------------------------- reading

    def read_available(self, progress: Callable[[int], object] | None = None) -> int:
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

    def _end_skip(self, tail_bytes: int) -> None:
        assert self._skipped is not None, "called only while an over-long line is being dropped"
        self.offset += self._skipped + tail_bytes
        self._skipped = None

    def _name_new_file(self) -> None:
        """Name a file read from its start by what it is: its path, inode and first line (or first bytes).

        A process that takes the sources over (--redis) before this file's first position reached the store reads
        it from the start again; named alike, its lines give the same ids, and the shared log counts them once.
        """
        head = os.pread(self._file().fileno(), FINGERPRINT_BYTES, 0)
        first = head.split(b"\n", 1)[0]
        inode = self._identity[1] if self._identity else 0
        self.ingest.start_file(fingerprint(f"{self.path}\0{inode}\0".encode() + first)[:8], self.ingest.line)

    def _consume(self, complete: bytes, nbytes: int) -> None:
        if self.ingest.file_id is None:
            self._name_new_file()  # its first line is complete now
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
            self._save_position()

    def finish(self) -> None:
        """Apply a last line without a newline (its writer has moved on) and date what is still undated."""
        if self._skipped is not None:
            self._end_skip(0)
        if self._partial:
            partial, self._partial = self._partial, b""
            self._consume(partial + b"\n", len(partial))
        self.settle()

    def settle(self) -> None:
        """Date lines still waiting for a date line from the file's modification time, then save the position."""
        if self.ingest.pending and self._fh is not None:
            self.ingest.resolve_undated(os.fstat(self._fh.fileno()).st_mtime)
            self._save_position()

    def poll(self) -> int:
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
            log.info("log %s was rotated; following the new file", self.path)
            if self.open():
                read += self.read_available()
        elif st is not None and st.st_size < self.offset:
            self.truncations += 1
            log.info("log %s was truncated; reading it from the start", self.path)
            self.close()
            if self.open():
                read += self.read_available()
        else:
            if st is not None:
                self.size = st.st_size
            if not read:
                self.settle()
        return read
