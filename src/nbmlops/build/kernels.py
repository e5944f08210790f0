"""A notebook's Jupyter kernel that exits before it answers is started again, up to ATTEMPTS times.

With `notebook_executor: papermill`, each task starts a kernel. jupyter_client chooses its five TCP
ports by binding each to port 0 and letting it go; the kernel binds them a moment later. A process
that takes one of them in that moment (another task's kernel, or any outgoing connection, whose
local port comes from the same range) makes the kernel exit with "Address already in use", and
the task fails with papermill's "Kernel died before replying to kernel_info" although nothing of
the notebook ran. A new kernel gets new ports. Found on a CI run whose other tests held many
connections open while the build's candidates started their kernels at once.
"""

from __future__ import annotations

from papermill.engines import NBClientEngine, papermill_engines

from .. import session

#: Kernels one notebook may start before its task fails with the last one's error.
ATTEMPTS = 3
#: What nbclient raises when the kernel process ended before its first reply.
DIED = "Kernel died before replying to kernel_info"


class RestartingEngine(NBClientEngine):
    """papermill's default engine, which starts another kernel when one exits before answering
    (no cell has run then: the notebook is as it was given)."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)
            except RuntimeError as error:
                if DIED not in str(error) or attempt == ATTEMPTS:
                    raise
                session.say(f"the notebook's kernel exited before it answered (start "
                            f"{attempt} of {ATTEMPTS}); starting another")  # fmt: skip


def restart_dead_kernels() -> None:
    """Make RestartingEngine papermill's default in this process (a build's worker, an engine's
    task); papermill's other engines and a person's own notebooks are left as they are."""
    papermill_engines.register(None, RestartingEngine)
