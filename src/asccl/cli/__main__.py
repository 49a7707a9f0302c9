"""``python -m asccl.cli``: the ``asccl`` command (as ``python -m asccl``)."""

import sys

from asccl.cli import main

sys.exit(main())
