"""The PAM backend: check passwords through a PAM service with python-pam.

The service name picks the stack in ``/etc/pam.d/``. Each call opens its
own PAM handle, so calls from several threads do not share state. PAM
modules may sleep after a failure (pam_unix waits about 2 s unless its line has the
``nodelay`` option), which adds to the server's own delay.
"""

from __future__ import annotations

import pam

from spoolgate.auth.credential import Credential
from spoolgate.errors import AuthBackendError, LoginFailedError

__all__ = ["PAMAuthenticator"]

LOGIN_FAILED = "authentication failed: wrong user name or password"

# PAM results that mean "this user may not log in with this password", as
# opposed to a broken or unreachable PAM stack. Values from Linux-PAM's
# _pam_types.h, as python-pam exports them.
_DENIED_CODES = frozenset(
    {
        pam.PAM_AUTH_ERR,
        pam.PAM_USER_UNKNOWN,
        pam.PAM_MAXTRIES,
        pam.PAM_PERM_DENIED,
        pam.PAM_ACCT_EXPIRED,
        pam.PAM_NEW_AUTHTOK_REQD,
        pam.PAM_AUTHTOK_EXPIRED,
        pam.PAM_CRED_INSUFFICIENT,
    }
)


class PAMAuthenticator:
    """Check logins with ``pam_authenticate`` and ``pam_acct_mgmt``."""

    def __init__(self, service: str) -> None:
        if not service or "/" in service:
            raise ValueError(f"invalid PAM service name {service!r}")
        self._service = service

    @property
    def service(self) -> str:
        """The PAM service name, a file name in ``/etc/pam.d/``."""
        return self._service

    def authenticate(self, credential: Credential) -> str:
        """Return the user name if PAM accepts the password; see Authenticator."""
        handle = pam.pam()
        try:
            accepted = handle.authenticate(
                credential.user,
                credential.password,
                service=self._service,
                resetcreds=False,
            )
        except (ValueError, UnicodeEncodeError) as exc:
            # A NUL or an octet that is not UTF-8 cannot reach PAM, so no
            # system password can match it.
            raise LoginFailedError(LOGIN_FAILED) from exc
        if accepted:
            return credential.user
        if handle.code in _DENIED_CODES:
            raise LoginFailedError(LOGIN_FAILED)
        raise AuthBackendError(
            f"PAM service {self._service!r} failed: {handle.reason} "
            f"(code {handle.code}); check /etc/pam.d/{self._service} and the "
            "system log"
        )
