"""docs/providers.md has a section per preset that names the documented facts the preset is built on, with
the provider's own pages, and agrees with what the preset does (its error map, its refresh-token scope)."""

from __future__ import annotations

import re

import pytest

from asgi_oauth_guard import providers
from asgi_oauth_guard.providers import presets

from .markdown import ROOT

PAGE = (ROOT / "docs" / "providers.md").read_text(encoding="utf-8")

# preset -> (its section's heading, the provider's documentation host, facts the section must name)
FACTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "google": (
        "Google",
        "developers.google.com",
        (
            "https://accounts.google.com",
            "access_type=offline",
            "prompt=consent",
            "100 refresh tokens per Google Account per client",
            "6 months",
            "7 days",
            "invalid_rapt",
            "reauthentication_required",
            "support.google.com/a/answer/9368756",
        ),
    ),
    "entra": (
        "Microsoft Entra ID",
        "learn.microsoft.com",
        (
            "{tenantid}",
            "`tid`",
            "tenants=",
            "organizations",
            "common",
            "consumers",
            "offline_access",
            "90",
            "mfa_required",
            "reference-error-codes",
        ),
    ),
    "github": (
        "GitHub",
        "docs.github.com",
        (
            "https://api.github.com/user",
            "user:email",
            "primary verified",
            "Accept: application/json",
            "comma-separated",
            "no `expires_in`",
            "8 hours",
            "6 months",
            "bad_verification_code",
            "incorrect_client_credentials",
            "redirect_uri_mismatch",
            "DELETE https://api.github.com/applications/{client_id}/token",
        ),
    ),
    "gitlab": (
        "GitLab",
        "docs.gitlab.com",
        ("openid", "two hours", "without a trailing slash", "invalid_grant"),
    ),
    "auth0": (
        "Auth0",
        "auth0.com",
        ("trailing slash", "offline_access", "reuse interval", "revokes the whole family", "audience="),
    ),
    "okta": (
        "Okta",
        "developer.okta.com",
        ("https://{domain}/oauth2/{id}", "org authorization server", "offline_access", "Refresh Token grant"),
    ),
    "keycloak": (
        "Keycloak",
        "www.keycloak.org",
        (
            "/realms/{realm}",
            "/auth",
            "SSO Session Idle",
            "Session not active",
            "offline_access",
            "Offline Session Idle",
        ),
    ),
}


def section(heading: str) -> str:
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## )", PAGE, flags=re.S | re.M)
    assert match, f"docs/providers.md has no section '## {heading}'"
    return " ".join(match.group(1).split())  # a fact may wrap across lines


def test_every_preset_has_its_facts_listed() -> None:
    assert sorted(FACTS) == sorted(presets.__all__)
    for name in presets.__all__:
        assert getattr(providers, name) is getattr(presets, name), f"providers.{name} is the preset"


@pytest.mark.parametrize("preset", sorted(FACTS))
def test_the_section_names_the_facts_its_preset_is_built_on(preset: str) -> None:
    heading, host, facts = FACTS[preset]
    text = section(heading)

    assert f"providers.{preset}(" in text, "the section shows the preset in use"
    assert "Built on:" in text
    links = re.findall(r"\]\((https://[^)\s]+)\)", text)
    assert any(host in link for link in links), f"no link to {host} in the {heading} section: {links}"
    missing = [fact for fact in facts if fact not in text]
    assert not missing, f"the {heading} section does not name {missing}"


def test_the_entra_section_lists_exactly_the_presets_error_map() -> None:
    text = section("Microsoft Entra ID")
    preset = providers.entra(tenant="organizations", client_id="app", client_secret="s")

    rows = dict(re.findall(r"\| `(AADSTS\d+)` \|[^|]*\| ([^|]+?) \|", text))
    assert rows.keys() == preset.quirks.error_reasons.keys()
    for code, reason in preset.quirks.error_reasons.items():
        assert f"`{reason}`" in rows[code], (code, rows[code])


def test_the_google_section_names_the_presets_error_map_and_params() -> None:
    text = section("Google")
    preset = providers.google(client_id="app", client_secret="s")

    for code, reason in preset.quirks.error_reasons.items():
        assert f"`{code}`" in text and f"`{reason}`" in text
    for name, value in preset.authorize_params.items():
        assert f"`{name}={value}`" in text
    for name, value in preset.quirks.consent_params.items():
        assert f"`{name}={value}`" in text


@pytest.mark.parametrize("preset", ["entra", "auth0", "okta"])
def test_a_section_that_says_offline_access_is_added_matches_the_preset(preset: str) -> None:
    kwargs = {"tenant": "organizations"} if preset == "entra" else {"domain": "x.example.com"}
    built = getattr(providers, preset)(client_id="app", client_secret="s", **kwargs)

    assert built.scopes is not None and "offline_access" in built.scopes
    assert "offline_access" in section(FACTS[preset][0])


def test_the_github_section_lists_exactly_the_presets_error_map() -> None:
    text = section("GitHub")
    preset = providers.github(client_id="app", client_secret="s")

    rows = dict(re.findall(r"\| `([a-z_]+)`[^|]*\| ([^|]+?) \|", text))
    aliases = dict(preset.quirks.error_aliases)
    assert set(rows) == {*aliases, "redirect_uri_mismatch"}
    for code, standard in aliases.items():
        assert f"`{standard}`" in rows[code], (code, rows[code])
