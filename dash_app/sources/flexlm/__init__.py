"""FlexNet (FlexLM) debug logs as an event source: followed live like `tail -F`, or backfilled once.

parse.py reads a line into a record, ingest.py applies one log stream's records to the pool, follower.py is the
background service over sources.flexlm.tailing; how far each file was read lives in store.checkpoints, and GET
/sources/flexlm in sources.api. `python -m dash_app ingest-flexlm` is backfill.py.
"""

from dash_app.sources.flexlm.follower import FlexLMFollower, follower_of
from dash_app.sources.flexlm.ingest import COUNTERS, ID_PREFIX, LogIngest, source_id

__all__ = ["COUNTERS", "ID_PREFIX", "FlexLMFollower", "LogIngest", "follower_of", "source_id"]
