"""The alert rules file: the issue's example is read as written, and every bad file is refused naming what is wrong."""

import json

import pytest

from dash_app.alerts.rules import AlertRulesError, load_rules, parse_rules
from dash_app.testing.commands import run_refused


def accept_all(url):
    return None


def refuse_nonsense(url):
    return "not a URL apprise knows" if url.startswith("nonsense") else None


EXAMPLE = {
    "notify": ["json://127.0.0.1:9000/hook", "mailto://user:pass@smtp.example.com?to=ops@example.com"],
    "repeat_seconds": 3600,
    "rules": [
        {"name": "near-full", "kind": "in_use_percent", "tool": "*", "above": 90, "for_seconds": 300},
        {"name": "denials", "kind": "denials", "tool": "*", "count": 5, "within_seconds": 600},
        {"name": "long-held", "kind": "held_longer_than", "tool": "*", "seconds": 43200},
        {"name": "overage-budget", "kind": "overage_cost", "tool": "*", "above": 10000, "period": "month"},
        {"name": "server-down", "kind": "source_down", "for_seconds": 120},
        {"name": "expiring", "kind": "expires_within", "days": 14},
        {"name": "disk", "kind": "not_persisting", "for_seconds": 60, "notify": ["json://127.0.0.1:9001/ops"]},
    ],
}


def test_the_issues_example_is_read_as_written():
    config = parse_rules(EXAMPLE, accept_all)
    assert config.repeat_seconds == 3600
    assert config.delivery_deadline_seconds == 15  # the default
    by_name = {rule.name: rule for rule in config.rules}
    assert [rule.kind for rule in config.rules] == [
        "in_use_percent",
        "denials",
        "held_longer_than",
        "overage_cost",
        "source_down",
        "expires_within",
        "not_persisting",
    ]
    assert by_name["near-full"].tool == "*" and by_name["near-full"].for_seconds == 300
    assert by_name["server-down"].tool is None
    assert by_name["expiring"].tool == "*"  # a tool rule without `tool` watches every tool
    assert by_name["near-full"].notify == tuple(EXAMPLE["notify"])
    assert by_name["disk"].notify == ("json://127.0.0.1:9001/ops",)  # its own list replaces the file's


def bad(**change):
    rules = [dict(EXAMPLE["rules"][0])]
    rules[0].update(change)
    return {**EXAMPLE, "rules": rules}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([], "expected a JSON object with 'rules'"),
        ({"rules": "x"}, "'rules' must be a list"),
        ({"rules": [], "extra": 1}, "unknown key 'extra'"),
        (bad(kind="too_many_coffees"), "rule 1 ('near-full'): unknown kind 'too_many_coffees'"),
        (bad(above=None), "rule 1 ('near-full'): 'above' must be a number, at least 0"),
        ({"rules": [{"name": "x", "kind": "denials", "count": 5}]}, "rule 1 ('x'): missing field 'within_seconds'"),
        ({"rules": [{"name": "x", "kind": "denials", "count": 2.5, "within_seconds": 60}]}, "'count' must be a whole number"),
        ({"rules": [{"name": "x", "kind": "overage_cost", "above": 1, "period": "year"}]}, "'period' must be one of day"),
        ({"rules": [{"name": "x", "kind": "source_down", "tool": "*"}]}, "unknown field 'tool' for kind source_down"),
        ({"rules": [{"kind": "source_down"}]}, "rule 1: 'name' must be a short printable text"),
        ({"rules": [{"name": "a", "kind": "source_down"}, {"name": "a", "kind": "source_down"}]}, "the name 'a' is used twice"),
        ({"notify": ["nonsense://x"], "rules": []}, "alerts: notify URL 1 cannot be used: not a URL apprise knows"),
        (bad(notify=["json://ok", "nonsense://secret@x"]), "rule 1 ('near-full'): notify URL 2 cannot be used"),
        ({"repeat_seconds": 0, "rules": []}, "'repeat_seconds' must be more than 0"),
        ({"delivery_deadline_seconds": 0, "rules": []}, "alerts: 'delivery_deadline_seconds' must be a number, more than 0"),
        ({"delivery_deadline_seconds": -3, "rules": []}, "'delivery_deadline_seconds' must be a number, more than 0"),
        ({"delivery_deadline_seconds": "15s", "rules": []}, "'delivery_deadline_seconds' must be a number, more than 0"),
        ({"delivery_deadline_seconds": None, "rules": []}, "'delivery_deadline_seconds' must be a number, more than 0"),
        ({"delivery_deadline_seconds": True, "rules": []}, "'delivery_deadline_seconds' must be a number, more than 0"),
    ],
)
def test_a_bad_file_is_refused_with_one_line_naming_the_rule_and_field(data, message):
    with pytest.raises(AlertRulesError) as refused:
        parse_rules(data, refuse_nonsense)
    text = str(refused.value)
    assert message in text
    assert "\n" not in text and "secret" not in text  # a URL's password never reaches the message


def test_the_command_line_refuses_a_bad_file_with_exit_status_2(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({"rules": [{"name": "x", "kind": "nope"}]}))
    done = run_refused(["--alerts", str(path)])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m dash_app: error: alerts {path}: rule 1 ('x'): unknown kind 'nope'; known: in_use_percent, denials, "
        "held_longer_than, overage_cost, source_down, expires_within, not_persisting"
    ]
    missing = run_refused(["--alerts", str(tmp_path / "none.json")])
    assert missing.returncode == 2 and f"alerts {tmp_path / 'none.json'}: not found" in missing.stderr
    path.write_text("{not json")
    assert "invalid JSON at line 1:" in run_refused(["--alerts", str(path)]).stderr


def test_the_delivery_deadline_is_read_from_the_file():
    assert parse_rules({**EXAMPLE, "delivery_deadline_seconds": 2.5}, accept_all).delivery_deadline_seconds == 2.5


def test_the_command_line_refuses_a_bad_delivery_deadline_with_exit_status_2(tmp_path):
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({**EXAMPLE, "delivery_deadline_seconds": 0}))
    done = run_refused(["--alerts", str(path)])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"python -m dash_app: error: alerts {path}: 'delivery_deadline_seconds' must be a number, more than 0"
    ]


def test_no_file_means_no_rules():
    assert load_rules(None, accept_all).rules == ()
