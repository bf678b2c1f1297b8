"""``python -m node.enclave --datadir D``: run the simulated enclave process."""

import sys

if __name__ == "__main__":
    from node.enclave.server import main

    sys.exit(main())
