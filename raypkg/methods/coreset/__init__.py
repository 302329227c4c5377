"""Coresets (DeepCore, CORDS, CCS): warm up, select a weighted subset with one of the
selection library's selectors (``raypkg.selection``), train on it (`effray select`,
`effray run coreset`)."""
