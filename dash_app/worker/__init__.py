"""The gunicorn worker class of `python -m dash_app` and the Procfile: gthread, with a deadline on every request.

Why a worker of our own: gunicorn's gthread worker gives a connection a thread as soon as its first byte arrives,
and that thread then waits, with no time limit, for the rest of the request: its line, headers and body. A few
hundred clients that send half a request and hold it take every thread, and the page and the API wait for as long
as they are held. gunicorn has no setting for it, and the thread pool is the only place requests are served.

So this worker reads each request in its event loop, with non-blocking reads, and hands the connection to a thread
only once the whole request has arrived: the head up to its blank line, then a body of the Content-Length it
announces or a chunked body up to its last chunk, as long as the body is within what the route accepts (64 KiB,
1 MiB for Dash's callbacks; a larger one is handed over at once, and the app refuses it unread). A held partial
request costs a file descriptor and its bytes, never a thread. Every request has one total deadline,
`header_timeout` seconds (`--header-timeout`, `DASH_APP_HEADER_TIMEOUT`, default 10) from the accept, or on a
kept-alive connection from the first byte of its next request: a client still short of its blank line then is
closed, and one still short of its body is answered 408, however it paces its bytes. Responses and long SSE
streams are not limited by it. Idle kept-alive connections wait in the loop as before, for gunicorn's `keepalive`.

The worker holds up to `max_connections` connections (`--max-connections`, default 10,000) and raises its soft
limit on file descriptors to match. At the limit it does not stop accepting, which would leave new clients (the
page's among them) in the listen queue until a held one times out: it closes the oldest connection that has not
yet sent a whole request (else the oldest lingering or idle kept-alive one) and logs one line per burst of them.

A request that cannot be read in the loop (gunicorn's own TLS, HTTP/2 prior knowledge, a request pipelined behind
another, a head over 64 KiB) is read by its thread as gthread does, its head under what is left of the same
deadline. A connection closed after its response lingers in the loop, not in a blocking read on the loop's thread,
so a client that never closes its end cannot stall the loop. An over-long request line is answered 414, and
too-large headers 431, with the API's JSON error body rather than gunicorn's HTML page.
"""

from dash_app.worker.head_timeout_worker import HeadTimeoutWorker

__all__ = ["HeadTimeoutWorker"]
