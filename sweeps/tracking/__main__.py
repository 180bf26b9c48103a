"""`python -m sweeps.tracking PARENT_PID COMMAND...`: the guard that `local_server` runs the server under."""
import sys

from sweeps.tracking.server import _guard

sys.exit(_guard(int(sys.argv[1]), sys.argv[2:]))
