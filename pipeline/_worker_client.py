"""The SDK worker command of the local runner's pre-started worker pool (``pipeline.workerpool``).

Run as ``python -S _worker_client.py SOCKET`` by Beam in place of ``python -m
apache_beam.runners.worker.sdk_worker_main``: it hands its environment (the control and
logging addresses Beam set), its working directory and its standard streams to the pool,
which forks a worker that has Beam and storybeam imported already, and then it waits for that
worker and exits with its status. Without site packages (``-S``) and with the standard library
only, it starts in milliseconds. When the pool cannot be reached, or dies before it forked, the
command becomes Beam's own worker (``exec``), so a run never depends on the pool.
"""

import json
import os
import socket
import sys

STARTED = b"S"
# The pool answers as soon as it has imported (seconds); a pool that hangs is given up on and
# Beam's own worker starts instead (the pool's fork for this client then finds it gone).
START_TIMEOUT_S = 120.0


def _stock_worker() -> None:
    python = sys.executable
    os.execv(python, [python, "-m", "apache_beam.runners.worker.sdk_worker_main"])


def main() -> None:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(sys.argv[1])
        payload = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode("utf-8")
        socket.send_fds(conn, [len(payload).to_bytes(8, "big")], [0, 1, 2])
        conn.sendall(payload)
        conn.settimeout(START_TIMEOUT_S)
        started = conn.recv(1)
        conn.settimeout(None)
    except (OSError, IndexError):
        started = b""
    if started != STARTED:
        conn.close()
        _stock_worker()
    status = conn.recv(1)  # the worker's exit status; nothing when it died without saying
    sys.exit(status[0] if status else 1)


if __name__ == "__main__":
    main()
