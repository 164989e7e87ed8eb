import sys

from vitgan.cli import main

sys.exit(main())
