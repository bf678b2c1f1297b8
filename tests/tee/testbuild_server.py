"""``python -m tests.tee.testbuild_server --datadir D``: the enclave process of the TEST build (the production
server loop answering through ``tests.tee.testbuild.handle_test``). Tests only: nothing in ``node`` starts it."""

import sys

if __name__ == "__main__":
    from node.enclave import server
    from tests.tee.testbuild import handle_test

    server.handle = handle_test
    sys.exit(server.main())
