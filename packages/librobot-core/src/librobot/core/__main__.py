import sys

from librobot.core.cli import main

sys.exit(main())
