"""``python -m asccl`` (and ``torchrun -m asccl``) run the ``asccl`` command."""

import sys

from asccl.cli import main

sys.exit(main())
