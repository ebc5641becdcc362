"""Where a batch of answers goes, in this order: the raw archive (``archive``: every answer as received,
fsynced before anything else), the Delta lake (``lake``, kept compact by ``compaction``), then the
warehouse (``nugen_etl.warehouse``). ``writer.SlotWriter`` drives the lake and the warehouse a batch
at a time; ``pending`` journals the loads the warehouse did not take; ``upgrade`` moves 0.1's
per-slot Parquet folders aside."""
