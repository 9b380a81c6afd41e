"""The mail store: scan, index and cache mbox files. No networking here.

Siblings import only the names listed in ``__all__``.
"""

from spoolgate.mbox.cache import (
    Refresh,
    RefreshReport,
    cache_path_for,
    default_cache_dir,
    load_cache,
    open_index,
    save_index,
    scan_file,
    write_cache,
)
from spoolgate.mbox.index import (
    DEFAULT_DIGEST_BYTES,
    FileIdentity,
    MboxIndex,
    MessageFlag,
    MessageRecord,
    TailMark,
    Variant,
)
from spoolgate.mbox.scan import (
    MboxScanner,
    MessageReader,
    ScanBatch,
    read_message,
    scan_bytes,
)

__all__ = [
    "DEFAULT_DIGEST_BYTES",
    "FileIdentity",
    "MboxIndex",
    "MboxScanner",
    "MessageFlag",
    "MessageReader",
    "MessageRecord",
    "Refresh",
    "RefreshReport",
    "ScanBatch",
    "TailMark",
    "Variant",
    "cache_path_for",
    "default_cache_dir",
    "load_cache",
    "open_index",
    "read_message",
    "save_index",
    "scan_bytes",
    "scan_file",
    "write_cache",
]
