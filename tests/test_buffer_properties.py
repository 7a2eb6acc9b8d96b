"""Property tests: the buffer agrees with a brute-force reference on random event streams."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.testing import FakeClock
from tests.buffer_reference import ReferenceBuffer
from tests.buffer_scenarios import START, TOOLS, USERS, WINDOWS, check_same, chunked, replay, small_chunks, timestamp_offset

operation = st.one_of(
    st.tuples(st.just("borrow"), st.integers(0, 2), st.integers(0, 4), st.booleans(), timestamp_offset),
    st.tuples(st.just("return"), st.integers(0, 40), st.booleans(), st.booleans(), timestamp_offset),
    st.tuples(
        st.just("failure"),
        st.integers(0, 3),
        st.integers(0, 4),
        st.sampled_from(["exhausted", "max_overage", "unknown_tool"]),
        timestamp_offset,
    ),
    st.tuples(
        st.just("advance"), st.one_of(st.integers(0, 90).map(float), st.sampled_from([0.5, 59.75, 600.0, 21600.0, 30000.0]))
    ),
    st.tuples(st.just("check"), st.sampled_from(WINDOWS), st.integers(1, 22000)),
)


# A buffer's settings and the operations on it; few names per example make repeats within a minute likely.
SCENARIO = {
    "retention": st.sampled_from([300, 900, 21600]),
    "n_tools": st.integers(1, 3),
    "n_users": st.integers(1, 5),
    "caps": st.tuples(*[st.sampled_from([0, 1, 2, 3, 5, 8, 1000])] * 3),
    "ops": st.lists(operation, min_size=1, max_size=60),
}


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SCENARIO)
def test_buffer_matches_reference(retention, n_tools, n_users, caps, ops):
    run_against_reference(retention, n_tools, n_users, caps, ops)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**SCENARIO, **small_chunks)
def test_bulk_eviction_matches_reference(retention, n_tools, n_users, caps, ops, bulk, pending):
    """The same, with whole-minute eviction for chunks of one to three events and adds one by one in small batches."""
    with chunked(bulk, pending):
        run_against_reference(retention, n_tools, n_users, caps, ops)


def run_against_reference(retention, n_tools, n_users, caps, ops):
    tools = TOOLS[:n_tools] + ["no such tool"]
    clock = FakeClock(START)
    real = RealtimeMetricsBuffer(retention, *caps, clock=clock)
    ref = ReferenceBuffer(retention, *caps, clock=clock)
    replay(real, ref, clock, tools, n_tools, USERS[:n_users], ops, check_same)
