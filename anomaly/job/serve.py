"""The long-running job (``anomaly serve``): APScheduler runs the cycle on the config's cron
``schedule`` (UTC) until told to stop.

Never two runs at once (a tick during a run is skipped; missed ticks coalesce into one), one
failed or crashed run is logged and the next tick runs again, and stopping lets the run in
progress finish. The trigger and the cycle are parameters, so tests drive the loop without
waiting for cron; the CLI owns the process (signals set ``stop``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from anomaly.config import Config
from anomaly.errors import AnomalyError
from anomaly.job.report import RunReport, format_summary

__all__ = ["serve"]

log = logging.getLogger(__name__)


def serve(
    config: Config,
    stop: threading.Event,
    *,
    cycle: Callable[[Config], RunReport] | None = None,
    trigger: BaseTrigger | None = None,
    initial_run: bool = True,
) -> None:
    """Run ``cycle`` (default :func:`~anomaly.job.run.run_once`) on ``trigger`` (default: the
    config's cron ``schedule`` in UTC) until ``stop`` is set; then wait for the run in
    progress, if any, and return.

    ``initial_run`` runs a cycle at once instead of waiting for the first tick. A cycle that
    raises is logged (:class:`~anomaly.errors.AnomalyError` as one line, anything else with
    its traceback) and the next tick runs again.
    """
    if cycle is None:
        from anomaly.job.run import run_once

        cycle = run_once
    lock = threading.Lock()

    def run() -> None:
        if not lock.acquire(blocking=False):
            log.warning("previous run still going; skipping this one")
            return
        try:
            report = cycle(config)
            log.info("run finished\n%s", format_summary(report, limit=20))
        except AnomalyError as e:
            log.error("run failed: %s", e)
        except Exception:  # noqa: BLE001 - a scheduled job must survive one bad cycle
            log.exception("run crashed")
        finally:
            lock.release()

    scheduler = BackgroundScheduler(timezone="UTC")
    when = f"schedule '{config.schedule}' (UTC)" if trigger is None else str(trigger)
    trigger = trigger or CronTrigger.from_crontab(config.schedule, timezone="UTC")
    job = scheduler.add_job(
        run, trigger, id="anomaly-cycle", max_instances=1, coalesce=True, misfire_grace_time=None
    )
    if initial_run:
        job.modify(next_run_time=datetime.now(timezone.utc))
    scheduler.start()
    log.info("serving: %s", when)
    while not stop.wait(0.5):
        pass
    scheduler.shutdown(wait=True)
    with lock:  # a run started just before shutdown finishes before we return
        pass
    log.info("stopped")
