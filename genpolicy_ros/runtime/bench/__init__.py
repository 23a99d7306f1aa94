"""``genpolicy bench``: what the real-time execution engine costs, measured in one run.

One module per measurement, plus the report and the plots::

    latency.py   chunk latency per device × backend × sampler-steps (interleaved runs,
                 p50/p99, max |Δ| vs eager), speed-up of the best backend
    executor.py  RateLoop + PolicyEngine at the control rate while a GenerationWorker
                 process generates back-to-back; the same loop idle as the baseline
    seams.py     executed-action smoothness at chunk seams per blending mode on a
                 simulated clock (fixed emulated latency → deterministic)
    report.py    the JSON document (machine, model, settings, results) and the table
    plots.py     PNGs (matplotlib Agg): latency histograms, seam traces, lateness

Ratios are what count on a noisy machine: every section measures its reference (eager,
idle loop, in-chunk acceleration) in the same run as the thing it is compared with.
"""
