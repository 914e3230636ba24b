"""What each preset builds, what it refuses to build, and its quirks' error map as a pure function."""

from __future__ import annotations

import pytest

from asgi_oauth_guard import (
    ConfigurationError,
    IDTokenError,
    OfflineAccess,
    Reason,
    TokenEndpointError,
    providers,
)
from asgi_oauth_guard.providers import Quirks
from asgi_oauth_guard.providers._quirks import error_reason, wants_consent

TENANT = "00000000-0000-0000-0000-000000000001"


def test_each_preset_builds_its_providers_issuer_and_refresh_token_scope() -> None:
    kw = {"client_id": "app", "client_secret": "s"}
    built = {
        "google": providers.google(**kw),
        "entra": providers.entra(tenant=TENANT, **kw),
        "gitlab": providers.gitlab(base_url="https://gitlab.example.com/", **kw),
        "auth0": providers.auth0(domain="t.us.auth0.com", audience="https://api.example.com", **kw),
        "okta": providers.okta(domain="o.okta.com", **kw),
        "okta-org": providers.okta(domain="o.okta.com", authorization_server=None, name="okta-org", **kw),
        "keycloak": providers.keycloak(base_url="https://kc.example.com/", realm="acme", offline=True, **kw),
    }

    assert {name: p.issuer for name, p in built.items()} == {
        "google": "https://accounts.google.com",
        "entra": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "gitlab": "https://gitlab.example.com",
        "auth0": "https://t.us.auth0.com/",
        "okta": "https://o.okta.com/oauth2/default",
        "okta-org": "https://o.okta.com",
        "keycloak": "https://kc.example.com/realms/acme",
    }
    assert built["google"].authorize_params == {"access_type": "offline"}
    assert built["google"].scopes is not None and "offline_access" not in built["google"].scopes
    for name in ("entra", "auth0", "okta", "keycloak"):
        scopes = built[name].scopes
        assert scopes is not None and scopes[0] == "openid" and "offline_access" in scopes, name
    assert built["auth0"].authorize_params == {"audience": "https://api.example.com"}
    assert [p.name for p in built.values()][:3] == ["google", "microsoft", "gitlab"]
    assert built["entra"].label == "Microsoft"


def test_presets_pass_other_provider_settings_through() -> None:
    google = providers.google(client_id="app", client_auth="none", name="google-work", title="Work account")

    assert (google.client_auth, google.client_secret, google.name, google.label) == (
        "none",
        "",
        "google-work",
        "Work account",
    )
    shared = providers.google(client_id="app", client_secret="s", offline=OfflineAccess())
    assert shared.offline is not None and shared.offline.scopes == (), "Google refuses offline_access"
    assert shared.authorize_params == {"access_type": "offline"}
    entra = providers.entra(tenant=TENANT, client_id="app", client_secret="s", offline=OfflineAccess())
    assert entra.offline == OfflineAccess() and entra.scopes is not None and "offline_access" in entra.scopes
    with pytest.raises(ConfigurationError, match="offline"):
        providers.okta(domain="o.okta.com", client_id="app", client_secret="s", offline="yes")  # type: ignore[arg-type]
    online = providers.google(client_id="app", client_secret="s", offline=False)
    assert online.authorize_params == {} and online.quirks.consent_params == {}
    with pytest.raises(ConfigurationError, match="client_secret"):
        providers.google(client_id="app")


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (
            lambda: providers.entra(tenant="contoso.onmicrosoft.com", client_id="a", client_secret="s"),
            "a GUID",
        ),
        (
            lambda: providers.entra(tenant=TENANT, tenants=[TENANT], client_id="a", client_secret="s"),
            "leave tenants",
        ),
        (
            lambda: providers.entra(
                tenant="organizations", tenants=["contoso"], client_id="a", client_secret="s"
            ),
            "GUIDs",
        ),
        (
            lambda: providers.entra(tenant="common", tenants=TENANT, client_id="a", client_secret="s"),
            "not one string",
        ),
        (
            lambda: providers.auth0(domain="https://t.auth0.com", client_id="a", client_secret="s"),
            "no https://",
        ),
        (lambda: providers.okta(domain="o.okta.com/oauth2", client_id="a", client_secret="s"), "host name"),
        (
            lambda: providers.okta(
                domain="o.okta.com", authorization_server="a/b", client_id="a", client_secret="s"
            ),
            "ID",
        ),
        (lambda: providers.keycloak(base_url="kc", realm="r", client_id="a", client_secret="s"), "absolute"),
        (
            lambda: providers.keycloak(base_url="https://kc", realm="a/b", client_id="a", client_secret="s"),
            "realm",
        ),
        (lambda: providers.gitlab(base_url="gitlab.com", client_id="a", client_secret="s"), "absolute"),
        (lambda: providers.google(client_id="a", client_secret="s", scopes="openid email"), "not a string"),
    ],
)
def test_a_preset_refuses_settings_that_cannot_work(build, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        build()


def test_entra_multi_tenant_issuer_is_the_template_with_the_tokens_tenant() -> None:
    preset = providers.entra(
        tenant="organizations", tenants=[TENANT.upper()], client_id="a", client_secret="s"
    )
    issuer = preset.quirks.id_token_issuer
    assert issuer is not None
    assert preset.quirks.discovery_issuer == "https://login.microsoftonline.com/{tenantid}/v2.0"

    assert issuer({"tid": TENANT}) == f"https://login.microsoftonline.com/{TENANT}/v2.0"
    for claims in ({"tid": "00000000-0000-0000-0000-000000000002"}, {}, {"tid": "../evil"}, {"tid": 7}):
        with pytest.raises(IDTokenError):
            issuer(claims)
    consumers = providers.entra(tenant="consumers", client_id="a", client_secret="s")
    assert consumers.quirks.id_token_issuer is None
    assert consumers.quirks.discovery_issuer == (
        "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
    )
    assert providers.entra(tenant=TENANT, client_id="a", client_secret="s").quirks.discovery_issuer is None


def refusal(error: str, description: str | None = None) -> TokenEndpointError:
    return TokenEndpointError(error, description)


def test_the_error_map_reads_entras_codes_where_they_fit() -> None:
    quirks = providers.entra(tenant=TENANT, client_id="a", client_secret="s").quirks
    reused = refusal("invalid_grant", "AADSTS70002: Error validating credentials. AADSTS54005: OAuth2 ...")
    expired = refusal("invalid_grant", "AADSTS70008: The provided authorization code or refresh token ...")
    mfa = refusal("invalid_grant", "AADSTS50076: Due to a configuration change made by your administrator")

    assert error_reason(quirks, reused, during="code") is Reason.code_reused, "the second code counts"
    assert error_reason(quirks, reused, during="refresh") is None, "a code reason never ends a refresh"
    assert error_reason(quirks, expired, during="code") is Reason.code_expired
    assert error_reason(quirks, expired, during="refresh") is None, "the guard's refresh_rejected then"
    assert error_reason(quirks, mfa, during="refresh") is Reason.mfa_required
    assert error_reason(quirks, mfa, during="code") is None
    assert error_reason(quirks, refusal("invalid_grant", "AADSTS540050: not 54005"), during="code") is None
    assert error_reason(quirks, refusal("invalid_grant"), during="code") is None
    assert error_reason(Quirks(), reused, during="code") is None


def test_googles_invalid_rapt_is_found_in_the_description() -> None:
    quirks = providers.google(client_id="a", client_secret="s").quirks
    rapt = refusal("invalid_grant", "reauth related error (invalid_rapt)")

    assert error_reason(quirks, rapt, during="refresh") is Reason.reauthentication_required
    assert (
        error_reason(quirks, refusal("invalid_grant", "Token has been expired or revoked."), during="refresh")
        is None
    )
    assert wants_consent(quirks, holds_refresh_token=False) == {"prompt": "consent"}
    assert wants_consent(quirks, holds_refresh_token=True) == {}


def test_quirks_are_checked_when_built() -> None:
    with pytest.raises(ConfigurationError, match="not reasons"):
        Quirks(error_reasons={"AADSTS54005": "code-reused"})
    with pytest.raises(ConfigurationError, match="regular expression"):
        Quirks(error_codes="AADSTS(")
