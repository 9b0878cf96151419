"""`python -m synsup`: the same as the `synsup` command."""

import sys

from synsup.units.app import main

sys.exit(main())
