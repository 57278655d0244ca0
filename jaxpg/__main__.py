"""``python -m jaxpg``: the same command line as the ``jaxpg`` console script."""

from jaxpg.cli import main

if __name__ == "__main__":  # importing the module (pkgutil, a test) runs nothing
    raise SystemExit(main())
