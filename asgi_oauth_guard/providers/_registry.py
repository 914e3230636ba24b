"""The guard's providers, by name: which one a login, a session or a logout token belongs to."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from .._errors import ConfigurationError
from ._client import ProviderClient

__all__ = ["Providers"]


class Providers:
    """The guard's providers in the order given; the first is the default (for records without a provider
    name, and for one-provider apps)."""

    def __init__(self, clients: Sequence[ProviderClient]) -> None:
        if not clients:
            raise ConfigurationError("providers= is empty: give at least one Provider(...)")
        self._by_name: dict[str, ProviderClient] = {}
        for client in clients:
            if client.name in self._by_name:
                raise ConfigurationError(
                    f"two providers are named {client.name!r}: give each Provider(name=...) its own"
                )
            self._by_name[client.name] = client
        self.default = clients[0]

    def __iter__(self) -> Iterator[ProviderClient]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str) -> ProviderClient:
        return self._by_name[name]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def get(self, name: str | None) -> ProviderClient | None:
        """The provider named ``name``; ``None`` for an unknown name. ``None`` names the default."""
        return self.default if name is None else self._by_name.get(name)

    def for_record(self, name: str | None) -> ProviderClient | None:
        """The provider a session or transaction names; records from before providers had names (no name)
        belong to the default. ``None``: a name this guard no longer has (the provider was removed)."""
        return self.default if name is None else self._by_name.get(name)
