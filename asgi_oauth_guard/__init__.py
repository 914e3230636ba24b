"""asgi-oauth-guard: an ASGI middleware that ends OAuth2 ``invalid_grant`` failures.

Exactly-once code exchange, a pinned ``redirect_uri``, one refresh per session at a time, tokens encrypted
server-side, and a clear re-login response when the provider says no.
"""

from ._auth import GuardAuth
from ._context import SCOPE_KEY, GuardState, Identity, current_identity, current_state
from ._errors import (
    ConfigurationError,
    ConsentRequired,
    GuardError,
    IDTokenError,
    ProviderUnavailable,
    ReloginRequired,
    StoreUnavailable,
    TokenEndpointError,
)
from ._events import EventHook, GuardEvent
from ._index import SessionInfo
from ._login_params import LoginParams
from ._middleware import OAuthGuard
from ._offline import OfflineAccess
from ._on_login import LoginHook, SignIn, SignInAccepted, SignInRefused
from ._pages import DEFAULT_PAGE_TEXTS, Page, PageHook, PageKind
from ._postgres import PostgresStore
from ._protocol import TokenSet
from ._reasons import Reason
from ._redis import RedisStore, store_from_url
from ._relogin import ReloginHandler, ReloginMode
from ._server_keys import ServerKeyError
from ._store import MemoryStore, Store
from ._telemetry import Telemetry
from ._token_manager import AccessToken, TokenAuth, TokenManager
from ._user import GuardUser
from .providers import Provider

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PAGE_TEXTS",
    "SCOPE_KEY",
    "AccessToken",
    "ConfigurationError",
    "ConsentRequired",
    "EventHook",
    "GuardAuth",
    "GuardError",
    "GuardEvent",
    "GuardState",
    "GuardUser",
    "IDTokenError",
    "Identity",
    "LoginHook",
    "LoginParams",
    "MemoryStore",
    "OAuthGuard",
    "OfflineAccess",
    "Page",
    "PageHook",
    "PageKind",
    "PostgresStore",
    "Provider",
    "ProviderUnavailable",
    "Reason",
    "RedisStore",
    "ReloginHandler",
    "ReloginMode",
    "ReloginRequired",
    "ServerKeyError",
    "SessionInfo",
    "SignIn",
    "SignInAccepted",
    "SignInRefused",
    "Store",
    "StoreUnavailable",
    "Telemetry",
    "TokenAuth",
    "TokenEndpointError",
    "TokenManager",
    "TokenSet",
    "current_identity",
    "current_state",
    "store_from_url",
]
