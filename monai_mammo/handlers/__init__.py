"""monai_mammo.handlers (modules are imported by name; this package stays import-light)."""
