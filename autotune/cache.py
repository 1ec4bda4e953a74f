"""autotune's cache folder: `$AUTOTUNE_CACHE_DIR`, else `~/.cache/autotune`. Every file autotune caches lies under
it (images, request bodies, the client's measured cost, unpacked model files), each kind in a folder of its own."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("AUTOTUNE_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "autotune"
