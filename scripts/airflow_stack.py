"""``make airflow``: Airflow as it runs in production, on this machine, until Ctrl-C.

PostgreSQL (a private cluster), the api-server, the scheduler (LocalExecutor) and the DAG
processor, started by :class:`skewless.devstack.airflow_stack.AirflowStack` (the code the stack
tests use). The DAGs come from ``dags/`` and the skewless config the CLI uses: ``SKEWLESS_CONF``,
else conf/local.yaml. Unless ``SKEWLESS_REDIS_URL`` is set, a private redis-server is started
and the tasks publish there. Ctrl-C (or SIGTERM) stops every process and removes the cluster.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    from skewless.devstack.airflow_stack import AirflowStack, StackError
    from skewless.devstack.local_redis import LocalRedis

    signal.signal(signal.SIGTERM, _stop)
    conf = Path(os.environ.get("SKEWLESS_CONF") or REPO / "conf" / "local.yaml").resolve()
    env = {"SKEWLESS_CONF": str(conf)}
    redis = None
    if not os.environ.get("SKEWLESS_REDIS_URL"):
        redis = LocalRedis().start()
        env["SKEWLESS_REDIS_URL"] = redis.url
    # Relative paths in conf/local.yaml are relative to the working directory: the repository.
    os.chdir(REPO)
    stack = AirflowStack(REPO / "dags", env)
    print("starting PostgreSQL, airflow db migrate, api-server, scheduler, dag-processor ...", flush=True)
    started = time.monotonic()
    try:
        stack.start()
        user, password = stack.login
        print(
            f"\nAirflow is up ({time.monotonic() - started:.0f} s)\n"
            f"  UI and REST API   {stack.url}    login: {user} / {password}\n"
            f"  skewless config   {conf}\n"
            f"  Redis             {env.get('SKEWLESS_REDIS_URL') or os.environ['SKEWLESS_REDIS_URL']}\n"
            f"  metadata database {stack.postgres.url.replace(stack.postgres.password, '***')}\n"
            f"  logs              {stack.logs}\n\n"
            "In another shell, with the same config and Redis, `skewless apply` makes the DAGs appear\n"
            "(paused; unpause them in the UI):\n"
            f"  export SKEWLESS_CONF={conf} SKEWLESS_REDIS_URL={env.get('SKEWLESS_REDIS_URL', '...')}\n"
            "  .venv/bin/skewless apply\n\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        while True:
            for name, process in stack.processes.items():
                if process.poll() is not None:
                    print(f"airflow {name} exited (code {process.returncode}); see {stack.logs}", flush=True)
                    return 1
            time.sleep(2)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
        return 0
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the cleanup
        stack.close()
        if redis is not None:
            redis.close()


if __name__ == "__main__":
    sys.exit(main())
