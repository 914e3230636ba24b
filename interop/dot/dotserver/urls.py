from __future__ import annotations

import os

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import harness

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("admin/health", harness.health),
    path("admin/revoke-grants", harness.revoke_grants),
    path("admin/advance-clock", harness.advance_clock),
    path("admin/freeze-clock", harness.freeze_clock),
    path("admin/events", harness.events),
    path("admin/grants", harness.grants),
    # at the root by default, so the issuer is the origin and RFC 8414's well-known URI is the issuer's;
    # MOUNT=o/ mounts it as django-oauth-toolkit's documentation does (issuer <origin>/o)
    path(os.environ.get("MOUNT", ""), include("oauth2_provider.urls")),
]
