"""Flags win over the environment for every setting, before any check of settings against each other."""

import ast
import inspect
import os

import pytest

from dash_app import config as config_module
from dash_app.__main__ import build_parser, main
from dash_app.config import SETTINGS, ConfigError
from dash_app.config import settings as declared
from dash_app.config.parsers import parse_bool

BY_NAME = {s.name: s for s in SETTINGS}
REDIS = "redis://127.0.0.1:6379/0"  # never connected to: the loader only reads it
LDAP = "ldap://ldap.example:389"
OIDC = {"oidc_issuer": "https://id.example", "oidc_client_id": "dash", "oidc_client_secret": "s" * 24}

# Every check of settings against each other in config.py, as pairs: setting A at `needs` requires setting B at
# `good` (`bad`: a value of B that fails the check, None for "unset"); `calm` is a value of A that requires nothing,
# `context` the other settings that let the check pass.
PAIRS = [
    # (A, needs, calm, B, good, bad, context)
    ("workers", "2", "1", "redis_url", REDIS, None, {}),
    ("auth", "oidc", "none", "oidc_issuer", OIDC["oidc_issuer"], None, OIDC),
    ("auth", "oidc", "none", "oidc_client_id", "dash", None, OIDC),
    ("auth", "oidc", "none", "oidc_client_secret", "s" * 24, None, OIDC),
    ("auth", "oidc", "none", "oidc_scopes", "openid email", "email profile", OIDC),
    ("auth", "proxy", "none", "trusted_proxies", "127.0.0.1/32", None, {}),
    ("pseudonymize_users", "1", "0", "pseudonym_key", "k" * 16, "short", {}),
    (
        "auth",
        "proxy",
        "none",
        "secret_key",
        "x" * 32,
        None,
        {"workers": "2", "redis_url": REDIS, "trusted_proxies": "10.0.0.0/8"},
    ),
    ("workers", "2", "1", "secret_key", "x" * 32, None, {"redis_url": REDIS, "auth": "proxy", "trusted_proxies": "10.0.0.0/8"}),
    ("workers", "2", "1", "redis_url", REDIS, None, {"auth": "proxy", "trusted_proxies": "10.0.0.0/8", "secret_key": "x" * 32}),
    ("ldap_url", LDAP, "", "ldap_base_dn", "dc=example,dc=com", None, {}),
    ("ldap_url", LDAP, "", "ldap_user_filter", "(cn={user})", "(cn=x)", {"ldap_base_dn": "dc=x"}),
    ("ldap_url", LDAP, "", "ldap_group_attribute", "ou", " ", {"ldap_base_dn": "dc=x"}),
    ("ldap_bind_dn", "cn=a", "", "ldap_password", "pw", None, {"ldap_url": LDAP, "ldap_base_dn": "dc=x"}),
]


def argv_of(flags):
    """The command line that gives each setting in `flags` its text."""
    argv = []
    for name, text in flags.items():
        setting = BY_NAME[name]
        if setting.parse is parse_bool:
            argv.append(setting.flag if parse_bool(text) else "--no-" + setting.flag[2:])
        else:
            argv += [setting.flag, text]
    return argv


def load(env=None, flags=None):
    """Load a Config as `python -m dash_app` does, from DASH_APP_* variables and flags, both by setting name."""
    environ = {BY_NAME[name].env: text for name, text in (env or {}).items()}
    return config_module.from_args(build_parser().parse_args(argv_of(flags or {})), environ=environ)


def has_flag(name):
    return BY_NAME[name].flag is not None


def checked_settings():
    """Every setting the cross-setting checks read (config.X in _checked and _check_auth)."""
    names = set()
    for function in (declared._checked, declared._check_auth, declared._check_directory):
        for node in ast.walk(ast.parse(inspect.getsource(function))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "config":
                names.add(node.attr)
    return names & set(BY_NAME)


def test_the_pairs_cover_every_setting_the_cross_checks_read():
    covered = {pair[0] for pair in PAIRS} | {pair[3] for pair in PAIRS}
    assert checked_settings() == covered


@pytest.mark.parametrize(
    ("a", "needs", "calm", "b", "good", "bad", "context"), PAIRS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_flag_and_a_variable_together_pass_the_checks_whichever_gives_which(a, needs, calm, b, good, bad, context):
    context = {k: v for k, v in context.items() if k != b}  # B comes only from where each case says
    every = load(env={**context, a: needs, b: good})  # all from the environment: the values to expect
    expected = {a: getattr(every, a), b: getattr(every, b)}

    def holds(config):
        assert {a: getattr(config, a), b: getattr(config, b)} == expected

    if has_flag(b):
        holds(load(env={**context, a: needs}, flags={b: good}))  # env A + flag B
        # The environment's B, overridden by the flag.
        holds(load(env={**context, a: needs, **({b: bad} if bad else {})}, flags={b: good}))
        holds(load(env={**context, a: needs, b: good}, flags={b: good}))
    holds(load(env={**context, b: good}, flags={a: needs}))  # flag A + env B
    # The environment's A, overridden by a flag that needs nothing of B: B's absence no longer matters.
    calmed = load(env={**context, a: needs, **({b: bad} if bad else {})}, flags={a: calm})
    assert getattr(calmed, a) == getattr(load(env={**context, a: calm}), a)


@pytest.mark.parametrize(
    ("a", "needs", "calm", "b", "good", "bad", "context"), PAIRS, ids=lambda v: v if isinstance(v, str) else ""
)
def test_the_checks_still_hold_once_flags_and_variables_are_merged(a, needs, calm, b, good, bad, context):
    without_b = {k: v for k, v in context.items() if k != b} | ({b: bad} if bad is not None else {})
    with pytest.raises(ConfigError):
        load(env={**without_b, a: needs})
    with pytest.raises(ConfigError):
        load(env=without_b, flags={a: needs})
    with pytest.raises(ConfigError):
        load(env={**without_b, a: calm}, flags={a: needs})  # the flag brings the need the environment did not
    if bad is not None and has_flag(b):
        with pytest.raises(ConfigError):
            load(env={**context, a: needs, b: good}, flags={b: bad})  # the flag takes the environment's good B away


# Two values each setting's parser takes (the environment's, the flag's); ("700", "900") for the rest.
SAMPLES = {
    "demo": ("0", "1"),
    "pseudonymize_users": ("0", "1"),
    "lmstat_servers": ("27000@lic01", "27001@lic02"),
    "rlmstat_servers": ("5053@lic01", "5054@lic02"),
    "lmx_servers": ("6200@lic01", "6201@lic02"),
    "dsls_servers": ("4085@ds01", "4086@ds02"),
    "redis_url": ("redis://127.0.0.1:1/1", REDIS),
    "auth": ("proxy", "none"),
    "oidc_issuer": ("https://a.example", "https://b.example"),
    "trusted_proxies": ("10.0.0.0/8", "192.168.0.0/16"),
    "role_map": ("g=admin", "h=viewer"),
    "ldap_url": ("ldap://a.example", "ldaps://b.example:636"),
}
# What lets any one of them pass the checks on its own.
CONTEXT = {
    "redis_url": REDIS,
    "pseudonym_key": "k" * 16,
    "secret_key": "x" * 32,
    "trusted_proxies": "172.16.0.0/12",
    "ldap_base_dn": "dc=x",
}


@pytest.mark.parametrize("name", [s.name for s in SETTINGS if s.flag is not None])
def test_a_flag_wins_over_its_variable_for_every_setting(name):
    env_text, flag_text = SAMPLES.get(name, ("700", "900"))
    wanted = getattr(load(env={**CONTEXT, name: flag_text}), name)
    assert getattr(load(flags={name: env_text}, env=CONTEXT), name) != wanted  # two different values
    assert getattr(load(env={**CONTEXT, name: env_text}, flags={name: flag_text}), name) == wanted


def test_main_takes_the_trusted_proxy_flag_with_the_auth_mode_from_the_environment(monkeypatch, capsys, tmp_path):
    for name in [k for k in os.environ if k.startswith("DASH_APP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DASH_APP_AUTH", "proxy")
    missing = tmp_path / "no-such-tools.json"
    # The loader passes; the start stops at the next step (the tools file), before any server.
    assert main(["--trusted-proxy", "127.0.0.1/32", "--tools", str(missing), "--db", ":memory:"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "--trusted-proxy" not in line and str(missing) in line
