"""``python -m opt_protocols``: the command line (same as ``opt-protocols``)."""
import sys

from .cli import main

sys.exit(main())
