"""Named points in the writers where a crash test can stop the process, and nothing else.

Writers that move a directory from one consistent state to the next call ``crash_point`` after
every durable step. In production the call only reads an environment variable. A test sets
``AESVC_VPR_TEST_KILL_AT=<step>`` (SIGKILL there), ``AESVC_VPR_TEST_STOP_AT=<step>`` (SIGSTOP
there, to hold a lock while another writer tries) or ``AESVC_VPR_TEST_TRACE=<file>`` (append every
step reached, so a test can kill at each one in turn).
"""

from __future__ import annotations

import os
import signal

KILL_ENV = 'AESVC_VPR_TEST_KILL_AT'
STOP_ENV = 'AESVC_VPR_TEST_STOP_AT'
TRACE_ENV = 'AESVC_VPR_TEST_TRACE'


def crash_point(step: str) -> None:
    """Record, kill or stop this process at ``step`` when a crash test asks for it."""
    trace = os.environ.get(TRACE_ENV)
    if trace:
        with open(trace, 'a') as f:
            f.write(step + '\n')
    if os.environ.get(KILL_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_ENV) == step:
        os.kill(os.getpid(), signal.SIGSTOP)
