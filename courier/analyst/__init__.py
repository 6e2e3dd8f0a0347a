"""The analyst workbench (SPEC 6): preview, test and draft flattening queries, draft feeds from
data, and import Spark SQL. Nothing here writes feed tables or run state: every command runs on
its own in-memory engine session (courier/analyst/workbench.py)."""
