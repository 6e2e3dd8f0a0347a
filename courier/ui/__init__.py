"""`courier ui`: a read-only status page over the state store (overview, runs, feeds, charts,
/api/status.json, /metrics). See courier/ui/app.py for the routes and courier/ui/reader.py
for how it stays out of the way of runs."""

from courier.ui.app import StatusApp
from courier.ui.reader import DatabaseBusy, Snapshot, StatusReader

__all__ = ["DatabaseBusy", "Snapshot", "StatusApp", "StatusReader"]
