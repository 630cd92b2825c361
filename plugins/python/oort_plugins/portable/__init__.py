"""ekpy: a plugin written against eKuiper's portable Python SDK, run on Oort
through `oort_plugin.ekuiper`.

Every module here is eKuiper portable-plugin code; only the imports differ
(`from oort_plugin.ekuiper import ...` instead of `from ekuiper import ...`,
and relative imports between the modules instead of the script folder on
`sys.path`). `__main__.py` is the plugin's `main`, as eKuiper's `pysam.py`.

- functions (`functions/ekpy` + `ekpy.json`): `shout(text)`, `clamp(x, low,
  high)` (its `validate` returns an error string), `spread(values)` (an
  aggregate), `whichrule()`;
- source `ekticker`: a push loop emitting `{"seq", "word", "value"}`;
- sink `eklines`: JSON lines to a file, acking when `requireAck` is set;
- sink `ekbytes`: each payload as it came (UTF-8) plus a newline, appended to
  a file; with `requireAck`, `ack_error` for a payload containing `fail`.
"""
