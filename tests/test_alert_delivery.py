"""Delivery of alert notifications through apprise to real local receivers: webhook, e-mail, retries, and secrets."""

import logging
import threading
import time
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dash_app.alerts.delivery import Deliveries, DeliveryRecord, Notification
from dash_app.alerts.redaction import check_url, redact
from dash_app.testing.receivers import SmtpReceiver, TricklingReceiver, WebhookReceiver
from dash_app.testing.servers import free_port

KEY = "near-full|GreenHills Multi IDE"
# Generous: these bound a wait on a condition, they are never slept.
WAIT = 30.0


def notification(
    *urls: str, title: str = "[licenses] FIRING near-full", body: str = "GreenHills Multi IDE: 19 of 20 in use"
) -> Notification:
    return Notification(KEY, "fire", title, body, urls)


@pytest.fixture
def deliveries():
    """Start Deliveries with the given settings, recording into `.records`; all are stopped after the test."""
    started: list[Deliveries] = []

    def start(**settings) -> tuple[Deliveries, list[DeliveryRecord]]:
        records: list[DeliveryRecord] = []
        queue = Deliveries(records.append, **settings)
        queue.start()
        started.append(queue)
        return queue, records

    yield start
    for queue in started:
        queue.stop()


def wait_until(condition, timeout: float = WAIT) -> None:
    """Poll `condition` until it holds; fail the test if it does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def dead_url() -> str:
    """Return a json:// URL to a loopback port that nothing listens on."""
    return f"json://127.0.0.1:{free_port()}/dead"


# ----------------------------------------------------------------------------------------------- delivery


def test_webhook_receives_title_and_body(deliveries):
    with WebhookReceiver() as hook:
        queue, records = deliveries()
        queue.send(notification(hook.url("/alerts")))
        [request] = hook.wait_for(1, WAIT)
        assert queue.wait_idle(WAIT)
    assert request.path == "/alerts"
    assert request.headers["Content-Type"] == "application/json"
    assert request.body["title"] == "[licenses] FIRING near-full"
    assert request.body["message"] == "GreenHills Multi IDE: 19 of 20 in use"
    [record] = records
    assert (record.key, record.event, record.ok, record.tries, record.error) == (KEY, "fire", True, 1, None)
    assert record.channel == hook.url("/alerts")
    assert queue.recent() == [record]


def test_email_arrives_with_subject_and_body(deliveries):
    with SmtpReceiver() as smtp:
        queue, records = deliveries()
        queue.send(notification(smtp.url(to="ops@example.com"), body="line one\nline two"))
        [mail] = smtp.wait_for(1, WAIT)
        assert queue.wait_idle(WAIT)
    assert mail.subject == "[licenses] FIRING near-full"
    assert mail.body == "line one\nline two"
    assert mail.to == ("ops@example.com",)
    assert mail.sender == "alerts@example.com"
    assert [r.ok for r in records] == [True]


def test_dead_channels_are_retried_with_backoff_and_given_up_while_a_good_one_is_delivered_at_once(deliveries):
    dead = dead_url()
    with WebhookReceiver(status=500) as failing, WebhookReceiver() as good:
        queue, records = deliveries(tries=3, first_backoff=0.05, max_backoff=0.08, clock=time.monotonic)
        queue.send(notification(dead, failing.url(), good.url()))
        assert queue.wait_idle(WAIT)
        # Three tries reached the failing webhook, and no more came once it was given up.
        assert len(failing.requests) == 3
        assert len(good.requests) == 1

    by_channel = {url: [r for r in records if r.channel == url] for url in (dead, failing.url(), good.url())}
    assert [(r.ok, r.tries) for r in by_channel[good.url()]] == [(True, 1)]
    for url in (dead, failing.url()):
        tries = by_channel[url]
        assert [(r.ok, r.tries) for r in tries] == [(False, 1), (False, 2), (False, 3)]
        # Back-off doubles from first_backoff and is capped at max_backoff.
        assert tries[0].error.endswith("retrying in 0.05s")
        assert tries[1].error.endswith("retrying in 0.08s")
        assert tries[2].error.endswith("gave up")
        # A retry is never made before its back-off has passed (a lower bound, so no timing luck involved).
        assert tries[1].at - tries[0].at >= 0.05
        assert tries[2].at - tries[1].at >= 0.08
        # The good channel was delivered before the dead one was given up.
        assert records.index(by_channel[good.url()][0]) < records.index(tries[-1])
    assert "500" in by_channel[failing.url()][0].error


def test_a_retry_waiting_for_its_backoff_holds_up_no_other_channel(deliveries):
    with WebhookReceiver() as good:
        queue, records = deliveries(tries=2, first_backoff=3600.0, max_backoff=3600.0)
        queue.send(notification(dead_url()))
        wait_until(lambda: len(records) == 1)
        queue.send(notification(good.url()))
        good.wait_for(1, WAIT)
        wait_until(lambda: len(records) == 2)
    assert [(r.ok, r.tries) for r in records] == [(False, 1), (True, 1)]
    assert records[0].error.endswith("retrying in 3600s")


def test_each_url_is_its_own_job_and_recent_is_newest_first(deliveries):
    with WebhookReceiver() as a, WebhookReceiver() as b:
        queue, records = deliveries()
        queue.send(notification(a.url("/1"), b.url("/2")))
        queue.send(Notification(KEY, "resolve", "resolved", "back to normal", (a.url("/3"),)))
        assert queue.wait_idle(WAIT)
        assert sorted(r.path for r in a.requests) == ["/1", "/3"]
        assert [r.path for r in b.requests] == ["/2"]
    assert [(r.event, r.channel) for r in queue.recent()] == [(r.event, r.channel) for r in reversed(records)]
    assert len(queue.recent(limit=2)) == 2


def test_a_channel_gets_its_notifications_in_the_order_sent_even_when_one_is_retried(deliveries):
    with WebhookReceiver(first=(500,)) as hook:
        queue, records = deliveries(first_backoff=0.2)
        queue.send(Notification(KEY, "fire", "fired", "over the threshold", (hook.url(),)))
        queue.send(Notification(KEY, "resolve", "resolved", "back to normal", (hook.url(),)))
        assert queue.wait_idle(WAIT)
        # The resolve waited behind the fire's retry: a channel never says "resolved" before "fired".
        assert [r.body["title"] for r in hook.requests] == ["fired", "fired", "resolved"]
    assert [(r.event, r.ok, r.tries) for r in records] == [("fire", False, 1), ("fire", True, 2), ("resolve", True, 1)]


def test_a_trickling_channel_holds_up_no_other_and_each_of_its_tries_is_cut_at_the_deadline(deliveries):
    # A byte every half second: no read timeout ever fires, and the try outlives several bytes before its deadline
    # however late (on a busy machine) its request reaches the receiver after the deadline's clock started.
    with TricklingReceiver(interval=0.5) as slow, WebhookReceiver() as healthy:
        queue, records = deliveries(tries=2, first_backoff=0.05, deadline=3.0)
        # More notifications to the trickling channel than the old queue had workers, then one to a healthy channel.
        for n in range(4):
            queue.send(Notification(f"slow-{n}", "fire", f"slow {n}", "trickled", (slow.url(),)))
        slow.wait_for(1, WAIT)
        queue.send(notification(healthy.url()))
        [delivered] = healthy.wait_for(1, 10.0)
        # It went out while the trickling channel's first try was still hanging.
        assert all(end.at > delivered.at for end in slow.ends)

        # Each try of the trickling channel ends at its deadline, is retried once, and is given up; then the next
        # notification to that channel is tried: its notifications go out one at a time, in order.
        ends = slow.wait_for_ends(2, WAIT)
        first, retry, next_one = slow.wait_for(3, WAIT)
        assert [r.body["title"] for r in (first, retry, next_one)] == ["slow 0", "slow 0", "slow 1"]
        # The try was cut from our side while the receiver was still trickling: no read timeout would have ended it.
        assert ends[0].at - first.at >= slow.interval and ends[0].sent >= 2
        queue.stop(timeout=0)
        # Stopping cuts the try in flight too: its connection and its thread end.
        slow.wait_for_ends(3, WAIT)
        wait_until(lambda: not [t for t in threading.enumerate() if t.name.startswith("alert-delivery")])
    slow_records = [(r.key, r.ok, r.tries, r.error) for r in records if r.key.startswith("slow")]
    assert slow_records[:2] == [
        ("slow-0", False, 1, "no answer within the delivery deadline of 3s; retrying in 0.05s"),
        ("slow-0", False, 2, "no answer within the delivery deadline of 3s; gave up"),
    ]
    assert [(r.key, r.ok) for r in records if r.key == KEY] == [(KEY, True)]


def test_an_on_record_that_raises_neither_stops_the_worker_nor_loses_the_record(caplog):
    calls: list[DeliveryRecord] = []

    def on_record(record: DeliveryRecord) -> None:
        calls.append(record)
        raise RuntimeError("store is down")

    queue = Deliveries(on_record)
    queue.start()
    try:
        with WebhookReceiver() as hook:
            queue.send(notification(hook.url("/1")))
            queue.send(notification(hook.url("/2")))
            assert queue.wait_idle(WAIT)
            assert len(hook.requests) == 2
    finally:
        queue.stop()
    assert [r.ok for r in calls] == [True, True]
    assert [r.ok for r in queue.recent()] == [True, True]
    assert "store is down" in caplog.text


def test_stop_drops_what_is_waiting_for_a_retry_with_a_log_line(caplog):
    first_try = threading.Event()
    queue = Deliveries(lambda record: first_try.set(), first_backoff=3600.0, max_backoff=3600.0)
    queue.start()
    queue.send(notification(dead_url()))
    assert first_try.wait(WAIT)
    assert not queue.wait_idle(0)
    with caplog.at_level(logging.WARNING, logger="dash_app.alerts.delivery"):
        queue.stop()
    assert queue.wait_idle(0)
    assert "1 undelivered notification(s) dropped" in caplog.text
    # A notification sent after stop is dropped too, never queued.
    queue.send(notification(dead_url()))
    assert queue.wait_idle(0)


def test_a_url_apprise_cannot_load_is_given_up_at_once(deliveries):
    queue, records = deliveries(tries=5, first_backoff=0.05)
    queue.send(notification("json://"))
    assert queue.wait_idle(WAIT)
    [record] = records
    assert (record.ok, record.tries) == (False, 1)
    assert "cannot use" in record.error


# ----------------------------------------------------------------------------------------------- check_url


@pytest.mark.parametrize(
    "url",
    ["nonsense://x", "", "   ", "json://", "just words", "mailto://user:secret@host", "slack://"],
)
def test_check_url_refuses_what_apprise_cannot_deliver_to(url):
    reason = check_url(url)
    assert reason
    assert "\n" not in reason
    assert "secret" not in reason


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:8080/hook",
        "jsons://hooks.example.com/alerts?+X-Api-Key=abc123",
        "mailto://user:pass@example.com",
        "mailtos://user:pass@smtp.example.com:587?from=alerts@example.com&to=ops@example.com",
        "mailto://127.0.0.1:2525?from=alerts%40example.com&to=ops%40example.com",
    ],
)
def test_check_url_accepts_json_and_mailto(url):
    assert check_url(url) is None


def test_check_url_names_the_unknown_scheme():
    assert "nonsense://" in check_url("nonsense://x")


# ----------------------------------------------------------------------------------------------- redact


@pytest.mark.parametrize(
    ("url", "secrets", "kept"),
    [
        ("mailto://user:secret@host", ["secret"], "mailto://user:***@host"),
        ("mailtos://ops:hunter2@smtp.example.com:587?from=a@example.com", ["hunter2"], "ops:***@smtp.example.com:587"),
        ("json://127.0.0.1:8080/hook?+Authorization=Bearer%20tok-9f8e7d", ["tok-9f8e7d"], "json://127.0.0.1:8080/hook?"),
        ("json://example.com/hook?token=abc123xyz&mode=x", ["abc123xyz"], "mode=x"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", ["A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"], "slack://"),
        ("nonsense://user:s3cr3t@host/path", ["s3cr3t"], "nonsense://user:***@host/path"),
    ],
)
def test_redact_hides_passwords_tokens_and_query_secrets(url, secrets, kept):
    redacted = redact(url)
    for secret in secrets:
        assert secret not in redacted
    assert kept in redacted
    assert "***" in redacted


def test_redact_leaves_a_url_without_secrets_alone():
    url = "mailto://127.0.0.1:2525?from=alerts%40example.com&to=ops%40example.com"
    assert redact(url) == url


# Passwords as apprise documents them: any text, percent-encoded in the URL.
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(password=st.text(min_size=1, max_size=40))
def test_redact_never_leaks_a_percent_encoded_password(password):
    encoded = quote(password, safe="")
    for template in ("mailtos://ops:{}@smtp.example.com:587?to=b@example.com", "json://bot:{}@hooks.example.com/x"):
        url = template.format(encoded)
        # A password that also spells a piece of the rest of the URL ('s' of 'mailtos') cannot be told apart there.
        assume(encoded not in template.format(""))
        redacted = redact(url)
        assert encoded not in redacted
        assert ":***@" in redacted


# Passwords typed as they are, from the characters a URL's userinfo may hold unencoded.
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(password=st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=", min_size=6))
def test_redact_never_leaks_a_plain_password(password):
    template = "mailto://ops:{}@smtp.example.com?from=alerts@example.com"
    url = template.format(password)
    assume(password not in template.format(""))
    assert password not in redact(url)


@given(token=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=30))
def test_redact_never_leaks_a_query_token_or_header(token):
    assume(token not in "json://example.com/hook")
    assert token not in redact(f"json://example.com/hook?token={token}")
    assert token not in redact(f"json://example.com/hook?+X-Api-Key={token}")


def test_records_recent_and_logs_never_hold_the_secret(deliveries, caplog):
    secret = "pa55-w0rd-xyz"
    caplog.set_level(logging.DEBUG)
    with WebhookReceiver() as ok_hook, WebhookReceiver(status=500) as failing:
        good = f"json://alice:{secret}@127.0.0.1:{ok_hook.port}/hook"
        bad = f"json://bob:{secret}@127.0.0.1:{failing.port}/hook?+Authorization=Bearer%20{secret}"
        dead = f"mailto://carol:{secret}@127.0.0.1:{free_port()}?from=alerts@example.com"
        queue, records = deliveries(tries=2, first_backoff=0.05)
        queue.send(notification(good, bad, dead))
        assert queue.wait_idle(WAIT)
        # The webhook got the credentials (apprise sends them as basic auth): only our side hides them.
        assert ok_hook.requests[0].headers["Authorization"].startswith("Basic ")
    assert len(records) == 5
    for record in records + queue.recent():
        assert secret not in repr(record)
        assert "***" in record.channel
    assert secret not in caplog.text
    assert "s...z" not in caplog.text  # apprise's own partial mask of the secret
    assert check_url(dead) is None
