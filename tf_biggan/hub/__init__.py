"""The TF-Hub module in both directions: exporting a run (export.py) and importing the official modules (importer.py)."""
