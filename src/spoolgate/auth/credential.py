"""The credential a login presents, and the interface every backend provides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Authenticator", "Credential"]


@dataclass(frozen=True, slots=True)
class Credential:
    """A user name and password; the password never shows in ``repr``."""

    user: str
    password: str = field(repr=False)


class Authenticator(Protocol):
    """An authentication backend: a passwd file, PAM, or a test fake.

    ``authenticate`` blocks (hashing and PAM are slow on purpose), so an
    asyncio caller runs it in a thread.
    """

    def authenticate(self, credential: Credential) -> str:
        """Return the user name to log in as, or raise.

        Raises LoginFailedError for a wrong user or password, with the same
        message either way, and AuthBackendError when the backend failed
        to return a result. Neither message contains the password.
        """
        ...
