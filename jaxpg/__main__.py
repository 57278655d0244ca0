"""``python -m jaxpg``: the same command line as the ``jaxpg`` console script."""

from jaxpg.cli import main

raise SystemExit(main())
