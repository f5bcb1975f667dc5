"""Crash points for the kill tests: `point(name)` dies where it stands.

With `KAGGLE_TF_KILL_AT=<name>:<n>` in the environment, the n-th call of
`point(name)` in a process kills that process with SIGKILL (no cleanup, no
`finally`), as a crash or an out-of-memory kill would. Without the
variable a point costs one dictionary look-up. The points sit where a kill
hurts most: after a temporary file is written and before it is renamed,
in the middle of an epoch, between a shard and the next.

| point        | where                                             |
|--------------|---------------------------------------------------|
| `shard`      | conversion: a shard staged, the next not yet      |
| `batch`      | training: after a batch                           |
| `checkpoint` | a `.keras` checkpoint written, not yet renamed    |
| `oof`        | a fold's `oof.npz` written, not yet renamed       |
| `gather`     | the joined `oof.npz` written, `metrics.json` not  |

Example:

>>> point("oof")        # a no-op unless KAGGLE_TF_KILL_AT names it
"""

import os
import signal

ENV = "KAGGLE_TF_KILL_AT"
_COUNTS = {}


def point(name: str) -> None:
    """Kills this process at the `n`-th call when `$KAGGLE_TF_KILL_AT`
    is `name:n`."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    target, _, nth = wanted.partition(":")
    if target != name:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
