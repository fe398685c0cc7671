"""EventBridge schedules: rules that fire as durable async invocations of Lambda functions.

::

    events_api (PutRule, PutTargets, ...) ─┐
    configfile [schedules.NAME] ─ sync_config ─┴─▶ store.Rules: RuleStore (the shared SQLite
                                                       │   file) or redis_store.RedisRuleStore
                                                       │ schedules()
                                                       ▼
    runner.ScheduleRunner.run_due(now) ── plan(rule, targets, now) ── expressions.parse / due
              │ one firing per owed instant (missed firings collapse into one)
              ├─▶ Rules.claim_firing(rule, instant, node): one node of the cluster wins it
              ├─▶ backlog.put_event(function, Scheduled Event, request id of the firing)
              │        └─▶ runtime.asyncinvoke: stored, then dispatched to the engine
              └─▶ Rules.mark_fired(rule, instant)

- :mod:`.expressions`: ``rate(...)`` and ``cron(...)`` parsed and evaluated (pure, time passed in);
- :mod:`.store`: the :class:`~.store.Rules` protocol and :class:`~.store.RuleStore` (SQLite);
- :mod:`.redis_store`: :class:`~.redis_store.RedisRuleStore`, the same on a shared Redis;
- :mod:`.runner`: :class:`~.runner.ScheduleRunner`, what is owed and its firing.
"""
