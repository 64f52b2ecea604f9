import sys

from unitrans.cli import main

sys.exit(main())
