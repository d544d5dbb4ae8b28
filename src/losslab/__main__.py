"""``python -m losslab``: the same command line as the ``losslab`` script."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
