"""Engine glue for the bundles (batch preparation, loss adapters, cascade stages)."""
