"""Lambda's async invocations (InvocationType=Event): stored before Invoke answers 202, then run
on the engine with Lambda's retries, maximum age, destinations and dead-letter list.

::

    engine.invoke(fn, e, "Event") ── backlog.EventBacklog.put_event ──▶ store (DUE) ── wake() ─┐
                                                                                             ▼
    dispatch.EventDispatcher ── claim_events(node, now, free slots) ──▶ INFLIGHT ──▶ engine.invoke
         │ success ──▶ OnSuccess record (model.invocation_record) put as an event, event_done
         │ failure ──▶ event_failed: model.after_failure ──▶ DUE again later | DEAD
         └ DEAD ──▶ OnFailure record put as an event, event_done (no destination: dead-letter list)

- :mod:`.model`: the invocation record and the pure rules of retries and ages;
- :mod:`.store`: the :class:`~.store.EventStore` protocol, and
  :class:`~.store.SqliteEventStore`, its SQLite implementation on the batch store's file;
- :mod:`.backlog`: :class:`~.backlog.EventBacklog`, the engine's backlog of Event invocations
  (the batch queue puts its events through one too);
- :mod:`.dispatch`: :class:`~.dispatch.EventDispatcher`, which runs them.

This package sits below the engine: the dispatcher reaches it only through its ``Invoker``
protocol.
"""
