"""The example job behind `make run` (`python -m demo run`): not part of the courier package,
a user of its public API (courier.Context, courier.load_project)."""
