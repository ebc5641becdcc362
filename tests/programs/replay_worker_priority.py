"""Start a replay worker's watch in this process; print whether it lowered its CPU priority as set and
whether it watches its parent."""

import os
import threading

from nugen_etl.replay import REPLAY_WORKER_NICENESS, _start_worker


def main() -> None:
    before = os.nice(0)
    _start_worker(os.getppid())
    lowered = os.nice(0) - before == min(REPLAY_WORKER_NICENESS, 19 - before)
    print(lowered, any(t.name == "nugen-replay-parent" for t in threading.enumerate()))


if __name__ == "__main__":
    main()
