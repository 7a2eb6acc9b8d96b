"""The pool's decisions in Redis: one Lua script decides a batch of borrows and returns and appends their events.

Redis runs a script alone, so every process and host sees the same counts: a borrow is granted only when the count
it read is still the count, and its event is in the log before anybody else decides. The script is the only writer
of the pool's keys and of the stream.

A command is a list, sent as JSON:
    ["b", key, tool, user, ts, id, host, version, total, commit, max_overage]   a borrow the pool decides
    ["o", key, tool, user, ts, id, host, version, commit, once]                  a borrow granted elsewhere (observed)
    ["r", id, ts]                                                                a return
    ["f", tool, user, ts, reason, id]                                            a denial
`key` is the name the tool is counted under (see licenses.series); `ts` is a string, so no digit of it is lost; a
`commit` of -1 means no limits are known (never an overage). An observed borrow with `once` true, and a denial with
an `id`, count once per id for a day (a log line read again after a leader change). The script answers each command
with "ok", "overage", a denial's reason, "unknown" (a return of no open borrow), "duplicate" (an observed id
already open or already seen), or for a return the borrow it ended (JSON [key, tool, user, ts, is_overage, host,
version]). It refuses everything (NOTSEEDED) while Redis has lost the pool, until it is rebuilt (eventlog.recovery).

Every call carries the last entry its process has read (or its store holds, if later). A stream that has not reached
it came back from an older copy (a restart from a snapshot taken before the last writes): its counts are old, so the
script throws the pool away and refuses, and the pool is rebuilt as after a total loss.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from dash_app.eventlog.connection import Keys

# True when the stream has not reached `known`, an entry some process has read (or the store holds): Redis restarted
# from an older copy. Then the pool's keys are dropped, and nothing is appended until the pool is rebuilt (see
# eventlog.recovery), which puts the missing entries back under their ids and moves the stream on past `known`.
_LOST = """
local function id_of(text)
  local ms, seq = string.match(text, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function behind(stream, known)
  if known == '' then return false end
  local last = '0-0'
  if redis.call('EXISTS', stream) == 1 then
    local info = redis.call('XINFO', 'STREAM', stream)
    for n = 1, #info, 2 do if info[n] == 'last-generated-id' then last = info[n + 1] end end
  end
  local lm, ls = id_of(last)
  local km, ks = id_of(known)
  return lm < km or (lm == km and ls < ks)
end
local function lost(stream, known, seeded, active, borrowed, charges)
  if not behind(stream, known) then return false end
  redis.call('DEL', seeded, active, borrowed, charges)
  return true
end
"""

_APPLY = (
    _LOST
    + """
local stream, active, borrowed, charges, lease, once, seeded, seen =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
if redis.call('EXISTS', seeded) == 0 or lost(stream, ARGV[3], seeded, active, borrowed, charges) then
  -- A Redis that lost its data has no counts: deciding now would pass every limit. The leader fills it again.
  return redis.error_reply('NOTSEEDED the shared pool is being filled in again after Redis lost its data')
end
if ARGV[1] ~= '' and redis.call('GET', lease) ~= ARGV[1] then
  return redis.error_reply('NOTLEADER this process no longer runs the sources')
end
if once ~= '' then
  local done = redis.call('GET', once)
  if done then return cjson.decode(done) end
end
local now = redis.call('TIME')[1]
-- An event a log line gave before (read again after a leader change): its id is in `seen`, so it counts once.
local function again(id)
  if id == nil or id == cjson.null then return false end
  if redis.call('ZSCORE', seen, id) then return true end
  redis.call('ZADD', seen, now, id)
  return false
end
local null = cjson.null
local events, results = {}, {}
for i, c in ipairs(cjson.decode(ARGV[2])) do
  local op = c[1]
  if op == 'b' or op == 'o' then
    local key, tool, user, ts, id, host, version = c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    local n = tonumber(redis.call('HGET', borrowed, key) or '0')
    local commit = (op == 'b') and c[10] or c[9]
    local denied = false
    if op == 'b' then
      if n >= c[9] then denied = 'exhausted'
      elseif n >= commit and n - commit >= c[11] then denied = 'max_overage' end
    elseif redis.call('HEXISTS', active, id) == 1 or (c[10] and again(id)) then
      denied = 'duplicate'
    end
    if denied == 'duplicate' then
      results[i] = denied
    elseif denied then
      events[#events + 1] = {ts, 'failure', tool, user, null, null, denied, null, null}
      results[i] = denied
    else
      local over = commit >= 0 and n >= commit
      redis.call('HSET', active, id, cjson.encode({key, tool, user, ts, over, host, version}))
      redis.call('HINCRBY', borrowed, key, 1)
      if over then redis.call('HINCRBY', charges, tool, 1) end
      events[#events + 1] = {ts, 'borrow', tool, user, id, over, null, host, version}
      results[i] = over and 'overage' or 'ok'
    end
  elseif op == 'r' then
    local held = redis.call('HGET', active, c[2])
    if held then
      local b = cjson.decode(held)
      redis.call('HDEL', active, c[2])
      redis.call('HINCRBY', borrowed, b[1], -1)
      events[#events + 1] = {c[3], 'return', b[2], b[3], c[2], null, null, null, null}
      results[i] = held
    else
      results[i] = 'unknown'
    end
  elseif op == 'f' then
    if again(c[6]) then
      results[i] = 'duplicate'
    else
      events[#events + 1] = {c[4], 'failure', c[2], c[3], null, null, c[5], null, null}
      results[i] = 'ok'
    end
  else
    return redis.error_reply('BADCOMMAND ' .. tostring(op))
  end
end
local entry = ''
if #events > 0 then entry = redis.call('XADD', stream, '*', 'e', cjson.encode(events)) end
-- A batch's answers are not read (one command's are): keep what a repeat needs, and only for as long as it may come.
if once ~= '' then redis.call('SET', once, cjson.encode({entry, (#results == 1) and results or {}}), 'EX', 600) end
return {entry, results}
"""
)

# Every process's look, when Redis answers again and every second, whether Redis came back from an older copy; 1 when
# it did (and the pool is dropped).
_CHECK = (
    _LOST
    + """
if redis.call('EXISTS', KEYS[2]) == 1 and lost(KEYS[1], ARGV[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]) then return 1 end
return 0
"""
)

# Fill the pool (from the store, and after a loss from the entries the processes applied that the store lacks), once
# per Redis (a new one, or one that lost its data). ARGV[4] holds those entries ([id, field e], in order): each is
# appended under its own id when above the stream's last id (an older copy holds the lower ones already), so every
# process reads each entry once and the store skips those it has. The stream's last id is then moved to ARGV[5] when
# below it: no new entry can take an id some process or the store has already seen.
_SEED = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local function id_of(text)
  local ms, seq = string.match(text, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function above(a, b)
  local am, as = id_of(a)
  local bm, bs = id_of(b)
  return am > bm or (am == bm and as > bs)
end
local last = '0-0'
if redis.call('EXISTS', KEYS[5]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[5])
  for n = 1, #info, 2 do if info[n] == 'last-generated-id' then last = info[n + 1] end end
end
for _, e in ipairs(cjson.decode(ARGV[4])) do
  if above(e[1], last) then
    redis.call('XADD', KEYS[5], e[1], 'e', e[2])
    last = e[1]
  end
end
if ARGV[5] ~= '' and above(ARGV[5], last) then
  if redis.call('EXISTS', KEYS[5]) == 1 then
    redis.call('XSETID', KEYS[5], ARGV[5])
  else
    redis.call('XADD', KEYS[5], 'MAXLEN', '0', ARGV[5], 'e', '[]')
  end
end
-- Whatever the pool's keys still hold is not to be trusted without the seeding that vouches for it.
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[1], ARGV[3])
for _, b in ipairs(cjson.decode(ARGV[1])) do
  redis.call('HSET', KEYS[2], b[1], cjson.encode({b[2], b[3], b[4], b[5], b[6], b[7], b[8]}))
  redis.call('HINCRBY', KEYS[3], b[2], 1)
end
for tool, n in pairs(cjson.decode(ARGV[2])) do redis.call('HSET', KEYS[4], tool, n) end
return 1
"""

# A process says it follows the log (scored by Redis's clock, so hosts' clocks do not matter); the members heard from
# in the last ARGV[2] ms are returned.
_MEMBERS = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""

# The pool's state, the id of the last entry that changed it and the seeding it comes from, read in one step.
_SNAPSHOT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {id, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('GET', KEYS[4]) or ''}
"""

# Settle a borrow whose answer was lost: a request not yet run is cancelled for good (its batch key answers for it);
# 1 when the borrow is open all the same (granted while its caller was told 503).
_SETTLE = """
redis.call('SET', KEYS[1], ARGV[2], 'NX', 'EX', ARGV[3])
return redis.call('HEXISTS', KEYS[2], ARGV[1])
"""


# A borrow settled as never granted keeps its batch key this long: a request still on its way is refused meanwhile.
CANCELLED_SECONDS = 3600


def _text(value: bytes | str) -> str:
    # A first answer is bytes; a repeated one comes back through cjson, where Redis gives strings as bytes too.
    return value.decode() if isinstance(value, bytes) else str(value)


class NotLeader(Exception):
    """A source's batch came from a process that no longer holds the lease; nothing of it was applied."""


class NotSeeded(redis.RedisError):
    """Redis lost the pool (it came back without its data); nothing is decided until the leader fills it again."""


@dataclass(frozen=True)
class OpenBorrow:
    """A borrow open in Redis, as the ledger keeps it."""

    id: str
    key: str
    tool: str
    user: str
    borrowed_at: float
    is_overage: bool
    host: str | None
    version: str | None


def open_borrow(borrow_id: str, held: str | bytes) -> OpenBorrow:
    """Return the OpenBorrow of a value of the active hash (or of a return's answer)."""
    key, tool, user, ts, over, host, version = orjson.loads(held)
    return OpenBorrow(borrow_id, key, tool, user, float(ts), bool(over), host, version)


@dataclass(frozen=True)
class Snapshot:
    """The pool's state in Redis at one entry of the log."""

    last_id: str
    active: list[OpenBorrow]
    charges: dict[str, int]
    seeding: str = ""  # which filling of the pool this state comes from (a new one when Redis lost its data)


def ts_text(ts: float) -> str:
    """Return an event time as the ledger carries it: the shortest text that reads back as the same float."""
    return repr(float(ts))


class RedisLedger:
    """The pool's keys in Redis and the scripts that change them."""

    def __init__(self, client: redis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._apply = client.register_script(_APPLY)
        self._seed = client.register_script(_SEED)
        self._snapshot = client.register_script(_SNAPSHOT)
        self._check = client.register_script(_CHECK)
        self._settle = client.register_script(_SETTLE)
        self._members = client.register_script(_MEMBERS)

    def apply(
        self, commands: Sequence[Sequence[Any]], fence: str | None = None, once: str | None = None, known: str = ""
    ) -> tuple[str | None, list[str]]:
        """Decide `commands` in one step; return the id of the entry holding their events (None: no event) and answers.

        With `fence`, nothing is applied unless the lease holds that token (NotLeader). With `once` (a new id per
        batch), sending the same batch again after a lost answer applies nothing twice and gets the first answer.
        `known` is the last entry the caller's process has read: a stream behind it lost data (NotSeeded). Redis
        errors pass through.
        """
        k = self.keys
        try:
            entry, answers = self._apply(
                keys=[k.events, k.active, k.borrowed, k.charges, k.lease, k.once(once) if once else "", k.seeded, k.seen],
                args=[fence or "", orjson.dumps(list(commands)), _known(known)],
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("NOTLEADER"):
                raise NotLeader(str(exc)) from None
            if str(exc).startswith("NOTSEEDED"):
                raise NotSeeded(str(exc)) from None
            raise
        return (_text(entry) or None), [_text(a) for a in answers]

    def seed_once(
        self,
        open_borrows: Iterable[Sequence[Any]],
        charges: Mapping[str, int],
        entries: Sequence[tuple[str, str]] = (),
        floor: str = "",
    ) -> bool:
        """Put open borrows and charges into a Redis that has no pool yet; return True if it had none and took them.

        `open_borrows` holds (id, key, tool, user, borrowed_at, is_overage, host, version) rows. `entries` are log
        entries (id, field e) to put back into the stream under their ids, in order (those above its last id), and
        `floor` an id the stream's last id is moved to when below it. The rows must already include what the
        entries do: they are appended as they were, not decided again.
        """
        k = self.keys
        rows = [[b[0], b[1], b[2], b[3], ts_text(b[4]), bool(b[5]), b[6], b[7]] for b in open_borrows]
        seeding = uuid.uuid4().hex
        taken = self._seed(
            keys=[k.seeded, k.active, k.borrowed, k.charges, k.events],
            args=[orjson.dumps(rows), orjson.dumps(dict(charges)), seeding, orjson.dumps(list(entries)), _known(floor)],
        )
        return int(taken) == 1

    def members(self, token: str, within_seconds: float) -> set[str]:
        """Say that the process `token` follows the log; return the tokens of those that said so within the time."""
        ms = int(within_seconds * 1000)
        return {_text(m) for m in self._members(keys=[self.keys.members], args=[token, ms])}

    def check(self, known: str) -> bool:
        """Return True when the stream is behind `known` (Redis came back from an older copy); the pool is then dropped."""
        k = self.keys
        return bool(self._check(keys=[k.events, k.seeded, k.active, k.borrowed, k.charges], args=[_known(known)]))

    def settle(self, borrow_id: str) -> bool:
        """Settle a borrow whose answer was lost: it is never granted from now on; return True if it was (it is open)."""
        k = self.keys
        cancelled = orjson.dumps(["", ["cancelled"]])
        return bool(self._settle(keys=[k.once(borrow_id), k.active], args=[borrow_id, cancelled, CANCELLED_SECONDS]))

    def forget_seen(self, before: float) -> None:
        """Drop ids of log lines seen before `before` (epoch seconds): a line is not read again after a day."""
        self.client.zremrangebyscore(self.keys.seen, "-inf", f"({int(before)}")

    def snapshot(self) -> Snapshot:
        """Return the pool's state and the log entry it is at, read in one step."""
        k = self.keys
        last_id, active, charges, seeding = self._snapshot(keys=[k.events, k.active, k.charges, k.seeded])
        borrows = [open_borrow(active[i].decode(), active[i + 1]) for i in range(0, len(active), 2)]
        return Snapshot(
            last_id.decode(),
            borrows,
            {charges[i].decode(): int(charges[i + 1]) for i in range(0, len(charges), 2)},
            _text(seeding),
        )


def _known(entry_id: str) -> str:
    # "0-0" (nothing read yet) asks nothing of the stream.
    return "" if entry_id in ("", "0-0") else entry_id
