"""``python -m bootstrap`` (also ``keyswitch bootstrap``): run a bootstrap node (see bootstrap/__init__.py)."""

from bootstrap import main

if __name__ == "__main__":
    main()
