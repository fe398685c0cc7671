"""The benchmark harness behind ``warmstart bench``.

    command.py   options → BenchPlan (target, LoadShape, payload, baselines)
        │
    runner.py    measure(target): start, run_load, close; then each baseline, same shape
        │            load.py      closed loop / open loop (latency from intended send time)
        │            targets.py   embedded engine, warmstart endpoint, any URL
        │            baselines.py raw unix-socket floor, ProcessPoolExecutor, multiprocessing.Pool
        ▼
    results.py   Recorder: outcomes → histograms (histogram.py) and counters → the JSON document
        │
    summary.py (text on stdout), report_html.py (--report), progress.py (live, on stderr)

Nothing here is imported by the engine; aiohttp and rich are imported only when used.
"""
