"""Operator commands: `python -m app.admin <command>` with the service's own settings (environment).

strip-metadata   rewrite originals stored before metadata stripping (docs/operations.md)
regenerate       make ready thumbnails (and pregenerated variants) again with today's settings
scrub            read every stored original back and check it against its checksum
jobs failed      list failed thumbnails and the jobs the queue holds as failed
jobs retry       run them again

regenerate and scrub run as low-priority jobs, a window at a time (`bulk`): resumable after Ctrl-C.
"""
