"""Store (入库): canonical rows upserted with change detection, evaluation history, the run ledger."""
