"""monai_mammo.compositors (modules are imported by name; this package stays import-light)."""
