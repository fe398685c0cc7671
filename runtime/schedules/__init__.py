"""EventBridge schedules: rules that fire as durable async invocations of Lambda functions.

::

    events_api (PutRule, PutTargets, ...) ─┐
    configfile [schedules.NAME] ─ sync_config ─┴─▶ store.RuleStore   (the shared SQLite file,
                                                       │              component schedule_rules)
                                                       │ schedules()
                                                       ▼
    runner.ScheduleRunner.run_due(now) ── plan(rule, targets, now) ── expressions.parse / due
              │ one firing per owed instant (missed firings collapse into one)
              ├─▶ backlog.put_event(function, Scheduled Event, request id of the firing)
              │        └─▶ runtime.asyncinvoke: stored, then dispatched to the engine
              └─▶ RuleStore.mark_fired(rule, instant)

- :mod:`.expressions`: ``rate(...)`` and ``cron(...)`` parsed and evaluated (pure, time passed in);
- :mod:`.store`: :class:`~.store.RuleStore`, the rules and their targets;
- :mod:`.runner`: :class:`~.runner.ScheduleRunner`, what is owed and its firing.
"""
