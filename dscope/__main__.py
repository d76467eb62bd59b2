import sys

from dscope.cli import main

sys.exit(main())
