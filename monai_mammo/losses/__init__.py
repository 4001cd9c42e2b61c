"""monai_mammo.losses (modules are imported by name; this package stays import-light)."""
