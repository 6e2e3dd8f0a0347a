"""Sources that courier fetches itself: HTTP polling (`http_poll`) and file pull (`file_pull`).

Both land into a stream's hourly layout under deterministic part names, so that a run
repeated after a crash overwrites the same objects instead of adding copies.
"""
