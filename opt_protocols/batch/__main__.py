"""``python -m opt_protocols.batch sweep|show|plot ...`` (the same as ``opt-protocols sweep ...``)."""
import sys

from .cli import main

sys.exit(main())
