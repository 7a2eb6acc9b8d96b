"""The shared event log (--redis): one Redis Stream every process appends to through the pool and applies to its buffer.

`connection` names the keys and opens clients, `ledger` holds the pool's atomic decisions (Lua), `shared_pool` is the
pool that makes them, `codec` turns entries into events, `follower` applies the log to this process, `persister`
writes it to the store once, `lease` elects the one process that runs the sources, `recovery` notices what Redis
lost, `shared` is one process's parts on the log, and `setup` wires them for build_state.
"""
