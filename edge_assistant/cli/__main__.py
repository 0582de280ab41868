"""`python -m edge_assistant.cli`, as the `edge-assistant` command."""

import sys

from . import main

sys.exit(main())
