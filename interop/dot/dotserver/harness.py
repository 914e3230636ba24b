"""What the interop project adds to django-oauth-toolkit: test users, claims, a movable clock, a journal of
token-endpoint traffic and test-only admin routes (loopback only: serve.py binds 127.0.0.1).

The admin routes have the paths and answers of interop/server.mjs's (oidc-provider), so the tests read both
providers the same way.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import shutil
import threading
import types
from collections.abc import Callable
from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import call_command
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.models import get_access_token_model, get_application_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauthlib.openid.connect.core.grant_types import base as _oidc_grant_base

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_MOUNT = "/" + os.environ.get("MOUNT", "")
TOKEN_PATH = f"{_MOUNT}token/"
REVOCATION_PATH = f"{_MOUNT}revoke_token/"


class FastPBKDF2Hasher(PBKDF2PasswordHasher):
    iterations = 1000


# ---------------------------------------------------------------------------------------------------------
# users: any well-formed name with the harness's password is a user, created at its first sign-in


class AnyTestUserBackend(BaseBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **_: Any
    ) -> Any:
        if not username or not USERNAME.match(username) or password != os.environ["USER_PASSWORD"]:
            return None
        user, _created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": f"{username.lower()}@example.test"}
        )
        return user

    def get_user(self, user_id: int) -> Any:
        return get_user_model().objects.filter(pk=user_id).first()


class ClaimsValidator(OAuth2Validator):
    """``sub`` is the user name (django-oauth-toolkit's default is the database id), plus name and email."""

    oidc_claim_scope: ClassVar[dict[str, str]] = {
        **OAuth2Validator.oidc_claim_scope,
        "email": "email",
        "email_verified": "email",
    }

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        user = request.user
        return {
            "sub": user.username,
            "preferred_username": user.username,
            "name": f"{user.username[:1].upper()}{user.username[1:]} Example",
            "email": user.email,
            "email_verified": True,
        }


# ---------------------------------------------------------------------------------------------------------
# a clock the tests can move forward, or stop: django-oauth-toolkit reads time through
# django.utils.timezone.now, oauthlib (the ID token's iat) through time.time in one module

_real_now: Callable[[], datetime.datetime] = timezone.now
_offset = datetime.timedelta()
_frozen: datetime.datetime | None = None


def _now() -> datetime.datetime:
    return (_frozen if _frozen is not None else _real_now()) + _offset


timezone.now = _now
_oidc_grant_base.time = types.SimpleNamespace(time=lambda: _now().timestamp())  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------------------
# the journal: what happened at the token and revocation endpoints, and every token family revoked

_lock = threading.Lock()
_events: list[dict[str, Any]] = []
_cause = threading.local()


def record(event: str, **fields: Any) -> None:
    with _lock:
        _events.append({"seq": len(_events), "event": event, **fields})


def digest(token: str) -> str:
    """What the journal says of a token: the start of its SHA-256 (django-oauth-toolkit's checksum)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def _family_of(raw_refresh_token: str) -> tuple[str | None, str | None]:
    checksum = hashlib.sha256(raw_refresh_token.encode("utf-8")).hexdigest()
    row = (
        get_refresh_token_model()
        .objects.filter(token_checksum=checksum)
        .select_related("user")
        .order_by("-id")
        .first()
    )
    if row is None:
        return None, None
    return (str(row.token_family) if row.token_family else None), row.user.username


def _watch_family_revocation() -> None:
    model = get_refresh_token_model()
    original = model.revoke_family.__func__  # type: ignore[attr-defined]

    def revoke_family(cls: Any, token_family: Any) -> None:
        live = cls.objects.filter(token_family=token_family, revoked__isnull=True).exists()
        original(cls, token_family)
        if token_family and live:
            record("grant.revoked", grant_id=str(token_family), cause=getattr(_cause, "value", "reuse"))

    model.revoke_family = classmethod(revoke_family)


class JournalMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path not in (TOKEN_PATH, REVOCATION_PATH):
            return self.get_response(request)
        record("request", path=request.path)
        form = request.POST
        response = self.get_response(request)
        try:
            body = json.loads(response.content or b"{}")
        except ValueError:
            body = {}
        if request.path == REVOCATION_PATH:
            record("revocation", status=response.status_code, token_type_hint=form.get("token_type_hint"))
            return response
        grant_type = form.get("grant_type")
        presented = form.get("refresh_token") or ""
        fields: dict[str, Any] = {
            "grant_type": grant_type,
            "status": response.status_code,
            "refresh_token_sha": digest(presented) if presented else None,
        }
        if response.status_code == 200 and isinstance(body, dict) and body.get("refresh_token"):
            family, sub = _family_of(body["refresh_token"])
            record("grant.success", **fields, grant_id=family, sub=sub)
        else:
            error = body.get("error") if isinstance(body, dict) else None
            detail = body.get("error_description") if isinstance(body, dict) else None
            record("grant.error", **fields, error=error, error_description=detail)
        return response


# ---------------------------------------------------------------------------------------------------------
# start-up


def prepare() -> None:
    """Create the tables and the client (and wrap revoke_family for the journal).

    Migrating costs about 3 s of CPU; with ``DOT_DB_TEMPLATE`` the first server of a test run saves its
    freshly migrated database there and the next ones start from a copy."""
    database = settings.DATABASES["default"]["NAME"]
    template = os.environ.get("DOT_DB_TEMPLATE")
    if template and os.path.exists(template):
        shutil.copyfile(template, database)  # before the first query opens the database
    call_command("migrate", verbosity=0, interactive=False)
    if template and not os.path.exists(template):
        connection.close()
        partial = f"{template}.{os.getpid()}"
        shutil.copyfile(database, partial)
        os.replace(partial, template)  # whole or not at all, for a server starting meanwhile
    _watch_family_revocation()
    application = get_application_model()
    redirect_uris = " ".join(os.environ["REDIRECT_URIS"].split(","))
    post_logout = " ".join(os.environ.get("POST_LOGOUT_REDIRECT_URIS", "").split(","))
    application.objects.create(
        name="interop",
        client_id=os.environ["CLIENT_ID"],
        client_secret=os.environ["CLIENT_SECRET"],
        client_type=application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=application.GRANT_AUTHORIZATION_CODE,
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout,
        algorithm=application.RS256_ALGORITHM,
        skip_authorization=True,  # a trusted first-party app: no consent page
    )


# ---------------------------------------------------------------------------------------------------------
# test-only admin routes


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {"status": "ok", "issuer": os.environ["ISSUER"], "client_id": os.environ["CLIENT_ID"]}
    )


@csrf_exempt
def revoke_grants(request: HttpRequest) -> JsonResponse:
    """Revoke every token family of ``sub`` (what an admin or a password change does)."""
    sub = request.GET.get("sub", "")
    families = (
        get_refresh_token_model()
        .objects.filter(user__username=sub, revoked__isnull=True)
        .values_list("token_family", flat=True)
        .distinct()
    )
    _cause.value = "admin"
    try:
        for family in list(families):
            get_refresh_token_model().revoke_family(family)
    finally:
        _cause.value = "reuse"
    get_access_token_model().objects.filter(user__username=sub).delete()
    return JsonResponse({"sub": sub})


@csrf_exempt
def advance_clock(request: HttpRequest) -> JsonResponse:
    global _offset
    _offset += datetime.timedelta(seconds=float(request.GET["seconds"]))
    return JsonResponse({"offset": _offset.total_seconds()})


@csrf_exempt
def freeze_clock(request: HttpRequest) -> JsonResponse:
    """Stop the clock where it is (``advance-clock`` still moves it): a test that moves its own clock in
    step with this one sees no time pass between its steps. Answers the time, in epoch seconds."""
    global _frozen
    if _frozen is None:
        _frozen = _real_now()
    return JsonResponse({"now": _now().timestamp()})


def events(request: HttpRequest) -> JsonResponse:
    since = int(request.GET.get("since", "0"))
    with _lock:
        return JsonResponse({"next": len(_events), "events": _events[since:]})


def grants(request: HttpRequest) -> JsonResponse:
    """The user's token families that still hold a live token, and their live tokens."""
    sub = request.GET.get("sub", "")
    now = timezone.now()
    refresh_model, access_model = get_refresh_token_model(), get_access_token_model()
    families: dict[str, dict[str, Any]] = {}
    for row in refresh_model.objects.filter(user__username=sub).select_related("access_token"):
        family = families.setdefault(
            str(row.token_family),
            {"grant_id": str(row.token_family), "refresh_tokens": 0, "access_tokens": 0},
        )
        if row.revoked is None:
            family["refresh_tokens"] += 1
    for token in access_model.objects.filter(user__username=sub, expires__gt=now):
        source = token.source_refresh_token
        linked = getattr(token, "refresh_token", None)
        row = linked if linked is not None else source
        if row is not None and str(row.token_family) in families:
            families[str(row.token_family)]["access_tokens"] += 1
    live = [f for f in families.values() if f["refresh_tokens"] or f["access_tokens"]]
    return JsonResponse({"sub": sub, "grants": live})
