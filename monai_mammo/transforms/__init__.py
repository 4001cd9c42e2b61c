"""monai_mammo.transforms (modules are imported by name; this package stays import-light)."""
