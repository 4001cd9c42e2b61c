"""monai_mammo.inferers (modules are imported by name; this package stays import-light)."""
