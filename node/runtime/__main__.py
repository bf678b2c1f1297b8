"""``python -m node.runtime``: run one node process (see node.runtime.runner)."""

from node.runtime.runner import main

if __name__ == "__main__":
    main()
