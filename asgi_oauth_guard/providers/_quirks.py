"""What one provider does differently from the RFCs, written down as data the flows consult.

Presets fill these in (``providers/presets``); a provider written out by hand usually needs none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Quirks"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Quirks:
    """A provider's departures from the specifications.

    ``error_reasons``: provider error codes that say unambiguously what happened, mapped to a
    :class:`Reason` value; a key matches the ``error`` of a token answer, or the code that starts its
    ``error_description`` (Entra's ``"AADSTS54005: ..."``).
    ``id_token_issuer``: the ``iss`` an ID token must carry, from its (signature-checked) claims, for a
    provider whose discovery names an issuer template (Entra's multi-tenant ``{tenantid}``); ``None``: the
    discovered issuer.
    """

    error_reasons: Mapping[str, str] = dataclasses.field(default_factory=dict)
    id_token_issuer: Callable[[Mapping[str, Any]], str] | None = None
