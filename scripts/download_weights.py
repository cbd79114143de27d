#!/usr/bin/env python
"""Download and verify fvbench model weights into the private cache.

Same as ``fvbench-download`` / ``python -m bench.models.weights`` (see
:func:`bench.models.weights.download_main`)::

    python scripts/download_weights.py facenet_vggface2 arcface_buffalo_l
    python scripts/download_weights.py --list
    python scripts/download_weights.py --all --cache-dir /data/fvbench-cache
"""

import sys

from bench.models.weights import download_main

if __name__ == "__main__":
    sys.exit(download_main())
