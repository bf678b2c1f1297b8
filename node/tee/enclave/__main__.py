"""``python -m node.tee.enclave --datadir D``: run the simulated enclave process."""

import sys

if __name__ == "__main__":
    from node.tee.enclave.server import main

    sys.exit(main())
