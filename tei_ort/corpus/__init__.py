"""``tei-ort embed-corpus``: embed a corpus on Ray Data, restartable, exactly once.

A run has two passes over the input, both Ray Data reads of ``source.CorpusDatasource``
(one read task per file, every row tagged with its position: file index, row number):

1. *plan* (``plan.py``): every row is classified where it is read (missing or invalid id,
   missing / null / empty / non-string text, too long with ``--no-truncate``); the driver
   then rejects every id seen before in input order, and subtracts the ids already written
   by an earlier run (read back from the output's part files).
2. *embed* (``embedder.py``): the rows still to do are read again and go through
   ``map_batches`` over an actor pool of tei-ort engines (``tei_ort.api.Model``: length
   sorted batches under the token budget); each actor batch is written as one Parquet file
   whose name comes from its first row's position, atomically (``output.py``).

Why this is exactly once: an output row exists only inside a complete part file (written
to a temporary name, then linked into place), accepted ids are unique, and a restart embeds
only accepted ids that no part file holds. Rejects are decided by the plan alone, so every
run writes the same ``rejects.parquet``.
"""
