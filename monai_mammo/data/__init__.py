"""monai_mammo.data (modules are imported by name; this package stays import-light)."""
