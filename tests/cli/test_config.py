"""Where the login is kept and who may read it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gitfleet_cli import config
from gitfleet_cli.errors import UsageError


def test_the_file_lives_under_xdg_config_home(tmp_path: Path):
    assert config.config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == (
        tmp_path / "gitfleet" / "config.json"
    )


def test_without_xdg_config_home_it_is_under_the_home_folder():
    # A relative XDG_CONFIG_HOME is invalid by the specification and ignored.
    for environ in ({}, {"XDG_CONFIG_HOME": "relative/dir"}):
        assert config.config_path(environ) == Path.home() / ".config" / "gitfleet" / "config.json"


def test_saved_file_is_0600_in_a_0700_folder_even_with_a_lax_umask(tmp_path: Path):
    import os

    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    old = os.umask(0o000)
    try:
        path = config.save(config.Credentials("https://gf.example.com", "gfu_secret"), environ)
    finally:
        os.umask(old)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert config.load(environ) == config.Credentials("https://gf.example.com", "gfu_secret")
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_environment_overrides_the_file(tmp_path: Path):
    environ = {"XDG_CONFIG_HOME": str(tmp_path)}
    config.save(config.Credentials("https://a.example.com", "file-token"), environ)

    loaded = config.load({**environ, "GITFLEET_URL": "https://b.example.com/"})
    assert loaded == config.Credentials("https://b.example.com", "file-token")
    loaded = config.load({**environ, "GITFLEET_TOKEN": "env-token"})
    assert loaded == config.Credentials("https://a.example.com", "env-token")


def test_credentials_never_show_the_token():
    assert "gfu_secret" not in repr(config.Credentials("https://x", "gfu_secret"))


@pytest.mark.parametrize(
    "url",
    ["ftp://x", "gitfleet.example.com", "https://user:pw@x.example.com", "https://x/?a=1", ""],
)
def test_a_server_url_must_be_plain_http_or_https(url: str):
    with pytest.raises(UsageError):
        config.normalise_url(url)


def test_an_unreadable_file_says_to_log_in_again(tmp_path: Path):
    path = config.config_path({"XDG_CONFIG_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_text("{not json")

    with pytest.raises(UsageError, match="gitfleet login"):
        config.load({"XDG_CONFIG_HOME": str(tmp_path)})
