"""``python -m mtnas`` (and ``torchrun -m mtnas``) runs the command line."""

import sys

from mtnas.cli import main

sys.exit(main())
