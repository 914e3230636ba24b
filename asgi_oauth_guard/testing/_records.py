from __future__ import annotations

import dataclasses
from typing import Literal

__all__ = ["ENDPOINTS", "Endpoint", "RecordedCall"]

Endpoint = Literal[
    "discovery", "jwks", "authorize", "token", "userinfo", "revoke", "end_session", "par", "emails"
]
ENDPOINTS: tuple[Endpoint, ...] = (
    "discovery",
    "jwks",
    "authorize",
    "token",
    "userinfo",
    "revoke",
    "end_session",
    "par",
    "emails",  # a mimic's list of the user's addresses (GitHub's /user/emails)
)

# Values of these parameters are secrets or one-time credentials: kept for assertions, hidden from repr.
_SECRET_PARAMS = frozenset(
    {"client_secret", "code", "code_verifier", "refresh_token", "access_token", "token", "id_token_hint"}
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RecordedCall:
    """One call that reached the provider (or one of its connection-level faults), as seen by the provider.

    `endpoint` is one of "discovery", "jwks", "authorize", "token", "userinfo", "revoke", "end_session",
    "par" (pushed authorization requests), or "unknown" for a path the provider does not serve. `params`
    holds the query and form parameters (the first value of each). `status` is the HTTP status
    answered, or 0 when a connection-level fault (`timeout_next`, `connect_error_next`, `down`)
    answered through `transport()` and the app never ran.
    `error` is the OAuth error code answered, if any; `fault` names the injected fault that shaped the
    answer ("fail", "timeout", "connect_error", "down", "slow"), if any. `at` is the provider's clock time
    when the call arrived.
    """

    endpoint: str
    method: str
    params: dict[str, str] = dataclasses.field(hash=False)
    status: int
    error: str | None = None
    grant_type: str | None = None
    at: float
    fault: str | None = None

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_PARAMS else v) for k, v in self.params.items()}
        return (
            f"RecordedCall(endpoint={self.endpoint!r}, method={self.method!r}, params={shown!r}, "
            f"status={self.status!r}, error={self.error!r}, grant_type={self.grant_type!r}, "
            f"at={self.at!r}, fault={self.fault!r})"
        )
