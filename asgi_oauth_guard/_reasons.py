from __future__ import annotations

import enum

__all__ = ["Reason"]


class Reason(str, enum.Enum):
    """Why the guard asks the user to sign in (again). Sent as ``reason`` to re-login responses.

    - ``login_required``: no session yet. The login route goes straight to the provider.
    - ``state_expired``: this sign-in cannot be completed: it took longer than the transaction TTL, its link
      was used up or opened in another browser (or cookies are blocked), or the provider refused its code.
    - ``access_denied``: the user or the provider declined the authorization request, or the ID token
      failed validation.
    - ``code_reused``: this authorization code was already presented once; it was not sent again.
    - ``code_expired``: the provider refused a code older than its usual lifetime.
    - ``redirect_uri_mismatch``: the callback arrived at another URL than the one pinned at login.
    - ``refresh_rejected``: the provider refused the refresh token (revoked, expired, password changed).
    - ``reauthentication_required``: the provider refused the refresh until the user proves again who they
      are (Google Workspace's re-authentication policy, ``invalid_rapt``).
    - ``mfa_required``: the provider refused the refresh until the user signs in with a second factor
      (Entra ID's ``AADSTS50076``: a Conditional Access policy asks for multi-factor authentication).
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
    reauthentication_required = "reauthentication_required"
    mfa_required = "mfa_required"
    session_expired = "session_expired"
    logged_out = "logged_out"

    def __str__(self) -> str:
        return self.value

    @property
    def message(self) -> str:
        """A sentence to show the user, e.g. on a sign-in page."""
        return MESSAGES[self]


MESSAGES: dict[Reason, str] = {
    Reason.login_required: "Please sign in to continue.",
    Reason.state_expired: (
        "This sign-in could not be completed: it expired, or was started in another browser "
        "or with cookies blocked. Please sign in again."
    ),
    Reason.access_denied: "Sign-in was cancelled or denied.",
    Reason.code_reused: "This sign-in was already completed elsewhere. Please sign in again.",
    Reason.code_expired: "The sign-in took too long to complete. Please sign in again.",
    Reason.redirect_uri_mismatch: "The sign-in came back to an unexpected address. Please sign in again.",
    Reason.refresh_rejected: (
        "Your sign-in is no longer valid (it may have been revoked). Please sign in again."
    ),
    Reason.reauthentication_required: (
        "Your organization asks you to confirm it is you from time to time. Please sign in again."
    ),
    Reason.mfa_required: (
        "Your organization now asks for a second sign-in step (multi-factor authentication). "
        "Please sign in again."
    ),
    Reason.session_expired: "Your session has expired. Please sign in again.",
    Reason.logged_out: "You have signed out.",
}
