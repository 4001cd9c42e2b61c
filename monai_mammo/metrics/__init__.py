"""monai_mammo.metrics (modules are imported by name; this package stays import-light)."""
