from __future__ import annotations

import enum

__all__ = ["Reason"]


class Reason(str, enum.Enum):
    """Why the guard asks the user to sign in (again). Sent as ``reason`` to re-login responses.

    - ``login_required``: no session, or a sign-in that cannot go on (another browser's link, a bad callback).
    - ``state_expired``: the sign-in took longer than the transaction TTL, or its link was already used up.
    - ``access_denied``: the user (or the provider) declined the authorization request.
    - ``code_reused``: this authorization code was already presented once; it was not sent again.
    - ``code_expired``: the provider refused a code older than its usual lifetime.
    - ``redirect_uri_mismatch``: the callback arrived at another URL than the one pinned at login.
    - ``refresh_rejected``: the provider refused the refresh token (revoked, expired, password changed).
    - ``session_expired``: the session is gone or holds no usable token.
    - ``logged_out``: the user signed out.
    """

    login_required = "login_required"
    state_expired = "state_expired"
    access_denied = "access_denied"
    code_reused = "code_reused"
    code_expired = "code_expired"
    redirect_uri_mismatch = "redirect_uri_mismatch"
    refresh_rejected = "refresh_rejected"
    session_expired = "session_expired"
    logged_out = "logged_out"

    def __str__(self) -> str:
        return self.value


MESSAGES: dict[Reason, str] = {
    Reason.login_required: "Please sign in to continue.",
    Reason.state_expired: "This sign-in link has expired or was already used. Please sign in again.",
    Reason.access_denied: "Sign-in was cancelled or denied.",
    Reason.code_reused: "This sign-in was already completed elsewhere. Please sign in again.",
    Reason.code_expired: "The sign-in took too long to complete. Please sign in again.",
    Reason.redirect_uri_mismatch: "The sign-in came back to an unexpected address. Please sign in again.",
    Reason.refresh_rejected: (
        "Your sign-in is no longer valid (it may have been revoked). Please sign in again."
    ),
    Reason.session_expired: "Your session has expired. Please sign in again.",
    Reason.logged_out: "You have signed out.",
}
