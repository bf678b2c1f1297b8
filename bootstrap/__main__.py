"""``python -m bootstrap``: run a bootstrap node (see bootstrap/__init__.py)."""

from node.runtime.runner import main

if __name__ == "__main__":
    main(bootstrap=True)
