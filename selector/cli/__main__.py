"""``python -m selector.cli``: the command line, as ``python -m selector``."""
from . import main

if __name__ == "__main__":
    main()
