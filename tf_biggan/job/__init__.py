"""The main job, `--mode=all`: the stages in order (stages.py) and the report (report.py)."""
