"""A poll is applied only when it is whole: cut-off, empty, huge and failing answers through the fake utilities.

Each test polls a real ServerPoll into a real pool through tests/fixtures' fake lmutil/rlmutil, in this process: a
cut-off answer returns nothing, a lasting gap is taken as the server's count after --poll-confirm polls, a daemon
down keeps its features, a triad member down is said, shared and token licenses count as the server counts them.
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool
from dash_app.recording import EventRecorder
from dash_app.sources.command import run_bounded
from dash_app.sources.polling import ServerPoll, ServerPoller
from dash_app.sources.servers import LMSTAT, RLMSTAT

FIXTURES = Path(__file__).parent / "fixtures"
LIC01 = (FIXTURES / "lmstat" / "lic01_one_vendor.txt").read_text()
SERVER = "27000@lic01"


@pytest.fixture
def answers(tmp_path, monkeypatch):
    """The folder the fake utilities answer from: write(text) sets the next answers."""
    monkeypatch.setenv("FAKE_LMUTIL_DIR", str(tmp_path))
    monkeypatch.setenv("FAKE_RLMUTIL_DIR", str(tmp_path))

    def write(text, server=SERVER):
        (tmp_path / f"{server}.txt").write_text(text)

    return write


def server_poll(kind=LMSTAT, confirm=3, utility=None, **limits):
    pool = LicensePool({}, EventRecorder(RealtimeMetricsBuffer()))
    fake = FIXTURES / ("fake_lmutil" if kind is LMSTAT else "fake_rlmutil")
    return ServerPoll(kind, str(utility or fake), SERVER, pool, time.time, confirm=confirm, **limits), pool


def up_to(text, marker):
    """Return `text` cut just before `marker`: an answer that stopped there."""
    return text[: text.index(marker)]


def test_a_cut_off_answer_returns_nothing_and_names_what_is_missing(answers):
    poll, pool = server_poll()
    answers(LIC01)
    assert poll.poll(timeout=10)
    assert len(pool.active_borrows()) == 80  # 13 + 2 + 64 + 1 licenses checked out

    # Cut just after SOLVER_CORE's "in use" line: that section lists 0 of its 13, the others are missing. No
    # feature is whole, so the source is down, and every checkout stays.
    answers(up_to(LIC01, '"SOLVER_CORE" v2024.1'))
    assert not poll.poll(timeout=10)
    assert poll.health.state == "down"
    assert poll.health.error.kind == "incomplete answer"
    assert "SOLVER_CORE: 13 in use, 0 listed" in poll.health.error.detail
    assert "MESHER: not in the answer" in poll.health.error.detail

    # Cut after MESHER's section: SOLVER_CORE and MESHER are whole (and unchanged), the rest kept as last seen.
    answers(up_to(LIC01, "Users of POST_VIEW"))
    assert poll.poll(timeout=10)
    assert poll.health.state == "degraded"
    assert "SOLVER_HPC: not in the answer" in poll.health.error.detail
    assert poll.health.extra["features"]["SOLVER_HPC"]["state"] == "degraded"
    assert poll.health.extra["features"]["SOLVER_CORE"]["state"] == "up"

    # The servers and daemons UP and no feature section at all; then nothing at all (exit status 0 both times).
    answers(up_to(LIC01, "Users of SOLVER_CORE"))
    assert not poll.poll(timeout=10)
    answers("")
    assert not poll.poll(timeout=10)
    assert "output unreadable" in poll.health.last_error

    # The whole answer again: nothing had been returned, so nothing is borrowed again (no session split in two).
    answers(LIC01)
    assert poll.poll(timeout=10)
    assert len(pool.active_borrows()) == 80
    assert (poll.health.counters["borrows"], poll.health.counters["returns"]) == (80, 0)
    # LEGACY_IO's section is the server's own error: the source says so, and is not up.
    assert (poll.health.state, poll.health.error.detail) == (
        "degraded",
        "LEGACY_IO: Error: 2 licenses, unsupported by licensed server",
    )


def test_after_a_restart_a_cut_off_first_poll_ends_none_of_the_borrows_kept(answers):
    first, pool = server_poll()
    answers(LIC01)
    assert first.poll(timeout=10)
    # A restart: a new poller of the same server over the pool (restored from the store), its first answer cut off.
    again = ServerPoll(LMSTAT, str(FIXTURES / "fake_lmutil"), SERVER, pool, time.time)
    answers(up_to(LIC01, "Users of POST_VIEW"))
    assert again.poll(timeout=10)
    assert (again.health.counters["returns"], len(pool.active_borrows())) == (0, 80)
    answers(LIC01)
    assert again.poll(timeout=10)
    assert (again.health.counters["borrows"], again.health.counters["returns"]) == (0, 0)


def test_a_gap_that_lasts_confirm_polls_is_taken_as_the_servers_count(answers):
    poll, pool = server_poll(confirm=3)
    answers(LIC01)
    assert poll.poll(timeout=10)
    # bnguyen's 4 licenses are no longer listed, yet the server still says 13 in use.
    lines = [line for line in LIC01.splitlines(keepends=True) if not line.lstrip().startswith("bnguyen ")]
    answers("".join(lines))
    for _ in range(2):
        assert poll.poll(timeout=10)
        assert poll.health.counters["returns"] == 0
        assert "SOLVER_CORE: 13 in use, 9 listed" in poll.health.error.detail
    assert poll.poll(timeout=10)  # the third poll in a row with the very same gap: the server's own count
    assert poll.health.counters["returns"] == 4
    assert len(pool.active_borrows()) == 76
    assert poll.health.state == "degraded" and "SOLVER_CORE: 13 in use, 9 listed" in poll.health.error.detail
    assert poll.poll(timeout=10)
    assert poll.health.counters["returns"] == 4


def test_a_feature_gone_for_confirm_polls_is_returned_and_forgotten(answers):
    poll, pool = server_poll(confirm=2)
    answers(LIC01)
    assert poll.poll(timeout=10)
    assert {e["tool"]: e["expiry"] for e in pool.status()}["PLUGIN_SDK"] == "2025-06-30"
    without = LIC01.replace(up_to(LIC01[LIC01.index("Users of PLUGIN_SDK") :], "Users of LEGACY_IO"), "")
    answers(without)
    assert poll.poll(timeout=10)
    assert poll.health.counters["returns"] == 0
    assert poll.poll(timeout=10)
    assert poll.health.counters["returns"] == 1  # ijansen's PLUGIN_SDK
    assert "PLUGIN_SDK" not in poll.health.extra["features"]
    # Nor does what the server said of it count any longer (here its expiry), while the others' does.
    expiry = {e["tool"]: e["expiry"] for e in pool.status()}
    assert (expiry.get("PLUGIN_SDK"), expiry["MESHER"]) == (None, "permanent")


def test_a_vendor_daemon_down_keeps_its_features_checkouts(answers):
    lic02 = (FIXTURES / "lmstat" / "lic02_two_vendors_one_down.txt").read_text()
    down = "The desired vendor daemon is down. (-97,121)"
    up = lic02.replace(f"plotrixd: {down}", "plotrixd: UP v11.18.2")
    up = up.replace(
        f"Users of PLOTRIX_PRO: Cannot get users of PLOTRIX_PRO: {down}",
        "Users of PLOTRIX_PRO:  (Total of 2 licenses issued;  Total of 1 license in use)\n\n"
        "    zoe gpc-300 gpc-300 (v3.1) (lic02.example.net/27010 901), start Wed 3/5 11:00",
    )
    up = up.replace(f"Users of PLOTRIX_LITE: Cannot get users of PLOTRIX_LITE: {down}", "Users of PLOTRIX_LITE: None")
    poll, pool = server_poll()
    answers(up)
    assert poll.poll(timeout=10)
    assert poll.health.state == "up"
    assert len(pool.active_borrows()) == 5
    answers(lic02)
    for _ in range(4):  # more than --poll-confirm polls: a daemon down never returns its features' checkouts
        assert poll.poll(timeout=10)
    assert (poll.health.counters["returns"], len(pool.active_borrows())) == (0, 5)
    features = poll.health.extra["features"]
    assert (features["PLOTRIX_PRO"]["state"], features["GEO_MODEL"]["state"]) == ("down", "up")
    assert poll.health.state == "degraded" and "PLOTRIX_PRO: vendor daemon plotrixd is down" in poll.health.error.detail


def test_a_triad_member_that_cannot_be_reached_is_named(answers):
    poll, pool = server_poll()
    answers((FIXTURES / "lmstat" / "lic03_triad_one_server_down.txt").read_text())
    assert poll.poll(timeout=10)
    assert len(pool.active_borrows()) == 8
    assert poll.health.state == "degraded"
    assert poll.health.error.detail == "fx-c: cannot be reached"


def test_reservations_queues_and_token_features_show_in_sources(answers):
    poll, _ = server_poll()
    answers(LIC01)
    assert poll.poll(timeout=10)
    features = poll.health.as_dict()["features"]
    assert (features["SOLVER_HPC"]["in_use"], features["SOLVER_HPC"]["reserved"]) == (97, 33)
    assert (features["MESHER"]["in_use"], features["MESHER"]["queued"]) == (2, 4)
    answers((FIXTURES / "lmstat" / "msc_tokens_public.txt").read_text())
    assert poll.poll(timeout=10)
    mscone = poll.health.as_dict()["features"]["MSCONE"]
    assert (mscone["in_use"], mscone["tokens"]) == (18, "ADAMS_Car_Plugin, ADAMS_View")
    assert poll.health.counters["malformed"] == 0


def test_rlm_shared_handles_count_once_and_token_products_are_read(answers):
    poll, pool = server_poll(RLMSTAT)
    answers((FIXTURES / "rlmstat" / "rlm_v12_shared_and_tokens.txt").read_text())
    assert poll.poll(timeout=10)
    assert poll.health.state == "up"
    by_tool = {}
    for borrow in pool.active_borrows():
        by_tool[borrow.tool] = by_tool.get(borrow.tool, 0) + 1
    # converge_gui: one license shared by two handles; converge_tecplot: three handles at max_share 2 hold two.
    assert by_tool == {"converge_gui": 1, "converge_tecplot": 2, "converge_super": 8}
    token = poll.health.as_dict()["features"]["converge_token"]
    assert token["tokens"] == "maps to: converge_super v3.0 (4 tokens)"
    assert poll.health.counters["malformed"] == 0


def test_rlm_an_answer_cut_in_its_usage_lines_returns_nothing(answers):
    public = (FIXTURES / "rlmstat" / "rlm_v12_converge_public.txt").read_text()
    poll, pool = server_poll(RLMSTAT)
    answers(public)
    assert poll.poll(timeout=10)
    assert len(pool.active_borrows()) == 93
    answers(up_to(public, "    converge_super v3.0: cddcp2"))
    assert poll.poll(timeout=10)  # the products in no use are whole; converge_super lists 29 of its 93
    assert (len(pool.active_borrows()), poll.health.counters["returns"]) == (93, 0)
    assert poll.health.state == "degraded"
    assert poll.health.error.detail == "converge_super: 93 in use, 29 listed"
    answers(up_to(public, "    csci license pool status"))  # no pool, no usage: nothing said of any product
    assert not poll.poll(timeout=10)
    assert (len(pool.active_borrows()), poll.health.counters["returns"]) == (93, 0)


def test_a_timed_out_wrapper_leaves_no_process_of_its_group(tmp_path):
    wrapper = tmp_path / "lmutil"
    # The child does not hold the poll's pipes: the old way (kill the wrapper alone) ended in time, and left it running.
    script = f"#!/bin/sh\necho $$ > {tmp_path}/group\nsleep 300 >/dev/null 2>&1 &\necho $! > {tmp_path}/child\nsleep 300\n"
    wrapper.write_text(script)
    wrapper.chmod(0o755)
    poll, _ = server_poll(utility=wrapper)
    assert not poll.poll(timeout=1)
    assert "no answer within 1 s" in poll.health.last_error
    group, child = int((tmp_path / "group").read_text()), int((tmp_path / "child").read_text())
    deadline = time.monotonic() + 10
    while (left := _group_members(group, also=child)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert left == []


def _group_members(group, also):
    """Return the live processes (not zombies) of process group `group`, and `also` if it lives."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if (int(fields[2]) == group or int(stat.parent.name) == also) and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


HUGE = """
import sys, time
from dash_app.buffer import RealtimeMetricsBuffer
from dash_app.licenses import LicensePool
from dash_app.recording import EventRecorder
from dash_app.sources.polling import ServerPoll
from dash_app.sources.servers import LMSTAT

def status_kb(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field))

pool = LicensePool({}, EventRecorder(RealtimeMetricsBuffer()))
poll = ServerPoll(LMSTAT, sys.argv[1], "27000@lic01", pool, time.time)
# The peak (VmHWM) starts again from here: the one getrusage reports is kept across exec from the forking parent.
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status_kb("VmRSS:")
good = poll.poll(timeout=120)
print(good, len(pool.active_borrows()), status_kb("VmHWM:") - before, poll.health.last_error, sep="|")
"""


def test_a_huge_answer_fails_and_memory_stays_bounded(tmp_path):
    # 300 MB of checkout lines with exit status 0, from a shell pipe (cheap to write); the poll reads at most 32 MiB.
    line = "    someone ws-1 ws-1 (v1.0) (lic01/27000 4711), start Mon 1/6 9:00"
    fake = tmp_path / "lmutil"
    fake.write_text(
        f"#!/bin/sh\nprintf 'Users of F:  (Total of 9 licenses issued;  Total of 1 license in use)\\n'\n"
        f"yes '{line}' | head -c 300000000\n"
    )
    fake.chmod(0o755)
    done = subprocess.run([sys.executable, "-c", HUGE, str(fake)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    good, borrows, growth_kb, error = done.stdout.strip().split("|")
    print(f"RSS growth polling a 300 MB answer: {int(growth_kb) / 1024:.1f} MB")
    assert (good, borrows) == ("False", "0")
    assert error == "output unreadable: output larger than 33554432 bytes"
    assert int(growth_kb) <= 50 * 1024


def test_stop_while_a_round_is_being_submitted_never_submits_to_a_shut_executor(answers):
    """stop() gives up waiting for the scheduler (its join times out) while it is between two submissions."""
    answers(LIC01)
    first, _ = server_poll()
    second, _ = server_poll()
    poller = ServerPoller([first, second], poll_seconds=1)
    between, release = threading.Event(), threading.Event()

    class Gate(list):
        """The servers, the scheduler held between the first and the second while the test stops the poller."""

        def __iter__(self):
            yield self[0]
            between.set()
            release.wait(60)
            yield from self[1:]

    poller.servers = Gate(poller.servers)
    crashed = []
    previous = threading.excepthook
    threading.excepthook = lambda args: crashed.append(args.exc_value)
    try:
        poller.start()
        assert between.wait(30)
        poller.stop()  # the scheduler is held: stop() waits its join time for it, then shuts the executor
        release.set()
        scheduler = poller._thread._thread
        scheduler.join(30)
        assert not scheduler.is_alive()
    finally:
        threading.excepthook = previous
        release.set()
    assert crashed == []


def test_a_command_is_given_its_standard_input_and_one_that_ignores_it_is_no_failure():
    """What DSLicSrv -admin needs: its commands on standard input; a command that exits unread is no broken pipe."""
    done = run_bounded(["sh", "-c", "read line; echo got $line; echo note >&2"], 10, 1024, stdin=b"connect lic01 4085\n")
    assert (done.returncode, bytes(done.stdout), done.stderr) == (0, b"got connect lic01 4085\n", b"note\n")
    assert run_bounded(["sh", "-c", "exit 4"], 10, 1024, stdin=b"x" * 100).returncode == 4
