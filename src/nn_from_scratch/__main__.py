"""``python -m nn_from_scratch`` runs the command line."""
import sys

from .cli import main

sys.exit(main())
