"""Which URL host a credential may be sent to: exactly its own, port included."""

from __future__ import annotations

import pytest

from credentials.validation import host_matches


@pytest.mark.parametrize(
    ("credential_host", "host", "port", "matches"),
    [
        ("github.com", "github.com", None, True),
        ("github.com", "GitHub.COM", None, True),
        ("github.com", "github.com", 443, False),
        ("github.com", "api.github.com", None, False),
        ("github.com", "github.com.evil.example", None, False),
        ("github.com", "evilgithub.com", None, False),
        ("git.example.com:8443", "git.example.com", 8443, True),
        ("git.example.com:8443", "git.example.com", None, False),
        ("git.example.com:8443", "git.example.com", 443, False),
        ("192.0.2.7:22", "192.0.2.7", 22, True),
        ("[2001:db8::1]:2222", "2001:DB8:0::1", 2222, True),
        ("[2001:db8::1]:2222", "[2001:db8::1]", 2222, True),
        ("[2001:db8::1]", "2001:db8::1", None, True),
        ("[2001:db8::1]", "2001:db8::2", None, False),
        ("[2001:db8::1]", "[2001:db8::1]", None, True),
        ("github.com", "", None, False),
        ("github.com", "github.com/", None, False),
        ("github.com", "github.com:443", None, False),
    ],
)
def test_a_credential_fits_only_its_exact_host_and_port(credential_host, host, port, matches):
    assert host_matches(credential_host, host, port) is matches
