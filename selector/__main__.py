"""``python -m selector``: the command line (what torchrun starts: ``torchrun ... -m selector train ...``)."""
from .cli import main

if __name__ == "__main__":
    main(prog_name="selector")
