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
version]). It refuses everything (NOTSEEDED) while Redis has lost the pool, until the leader has filled it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis

from dash_app.eventlog.connection import Keys

_APPLY = """
local stream, active, borrowed, charges, lease, once, seeded, seen =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
if redis.call('EXISTS', seeded) == 0 then
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

# Take the pool's state over from the store, once per Redis (a new one, or one that lost its data).
_SEED = """
if not redis.call('SET', KEYS[1], '1', 'NX') then return 0 end
for _, b in ipairs(cjson.decode(ARGV[1])) do
  redis.call('HSET', KEYS[2], b[1], cjson.encode({b[2], b[3], b[4], b[5], b[6], b[7], b[8]}))
  redis.call('HINCRBY', KEYS[3], b[2], 1)
end
for tool, n in pairs(cjson.decode(ARGV[2])) do redis.call('HSET', KEYS[4], tool, n) end
return 1
"""

# The pool's state and the id of the last entry that changed it, read in one step.
_SNAPSHOT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = '0-0'
if #last > 0 then id = last[1][1] end
return {id, redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3])}
"""


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

    def apply(
        self, commands: Sequence[Sequence[Any]], fence: str | None = None, once: str | None = None
    ) -> tuple[str | None, list[str]]:
        """Decide `commands` in one step; return the id of the entry holding their events (None: no event) and answers.

        With `fence`, nothing is applied unless the lease holds that token (NotLeader). With `once` (a new id per
        batch), sending the same batch again after a lost answer applies nothing twice and gets the first answer.
        Redis errors pass through.
        """
        k = self.keys
        try:
            entry, answers = self._apply(
                keys=[k.events, k.active, k.borrowed, k.charges, k.lease, k.once(once) if once else "", k.seeded, k.seen],
                args=[fence or "", orjson.dumps(list(commands))],
            )
        except redis.ResponseError as exc:
            if str(exc).startswith("NOTLEADER"):
                raise NotLeader(str(exc)) from None
            if str(exc).startswith("NOTSEEDED"):
                raise NotSeeded(str(exc)) from None
            raise
        return (_text(entry) or None), [_text(a) for a in answers]

    def seed_once(self, open_borrows: Iterable[Sequence[Any]], charges: Mapping[str, int]) -> bool:
        """Put the store's open borrows and charges into a Redis that has no pool yet; return True if it had none.

        `open_borrows` holds (id, key, tool, user, borrowed_at, is_overage, host, version) rows.
        """
        k = self.keys
        rows = [[b[0], b[1], b[2], b[3], ts_text(b[4]), bool(b[5]), b[6], b[7]] for b in open_borrows]
        return bool(
            self._seed(keys=[k.seeded, k.active, k.borrowed, k.charges], args=[orjson.dumps(rows), orjson.dumps(dict(charges))])
        )

    def forget_seen(self, before: float) -> None:
        """Drop ids of log lines seen before `before` (epoch seconds): a line is not read again after a day."""
        self.client.zremrangebyscore(self.keys.seen, "-inf", f"({int(before)}")

    def answer_of(self, once: str) -> tuple[str | None, list[str]] | None:
        """Return what the call sent with `once` answered, or None when it never ran (or was forgotten)."""
        raw = self.client.get(self.keys.once(once))
        if raw is None:
            return None
        entry, answers = orjson.loads(raw)
        return (entry or None), [str(a) for a in answers]

    def snapshot(self) -> Snapshot:
        """Return the pool's state and the log entry it is at, read in one step."""
        k = self.keys
        last_id, active, charges = self._snapshot(keys=[k.events, k.active, k.charges])
        borrows = [open_borrow(active[i].decode(), active[i + 1]) for i in range(0, len(active), 2)]
        return Snapshot(
            last_id.decode(),
            borrows,
            {charges[i].decode(): int(charges[i + 1]) for i in range(0, len(charges), 2)},
        )
