"""The job queue (ADR 0016): pgqueuer on the app's PostgreSQL, its jobs, and the worker tier.

`queue` is the only module that speaks to pgqueuer's tables; `worker` runs jobs in a process (a
`python -m app.worker` process or, when told to, an API process); `supervisor` keeps one worker
process per core running. Each job receives ids and opens its own session.
"""
