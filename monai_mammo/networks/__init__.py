"""monai_mammo.networks (modules are imported by name; this package stays import-light)."""
