"""``python -m ckptwatch``: the same as the ``ckptwatch`` command."""

import sys

from .cli import main

sys.exit(main())
