"""Scheduled jobs: the job store (``HERMES_HOME/cron``), schedules, and the scheduler.

A job is a prompt the agent answers on a schedule, in a fresh session of
source ``cron:<job id>``; the answer is kept in ``cron/output/<job id>/`` and,
when the job says so, delivered to a chat through the gateway. The gateway
runs the scheduler (``cron.enabled``); ``hermes cron`` and the agent's
``cron`` tool manage the jobs. Jobs are the user's data: managed mode (NixOS)
does not guard them.
"""
