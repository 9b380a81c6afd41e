"""The mail store: scan, index and cache mbox files. No networking here.

Siblings import only the names listed in ``__all__``.
"""

from spoolgate.mbox.index import (
    DEFAULT_DIGEST_BYTES,
    FileIdentity,
    MboxIndex,
    MessageFlag,
    MessageRecord,
    TailMark,
    Variant,
)

__all__ = [
    "DEFAULT_DIGEST_BYTES",
    "FileIdentity",
    "MboxIndex",
    "MessageFlag",
    "MessageRecord",
    "TailMark",
    "Variant",
]
