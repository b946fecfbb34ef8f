"""Serving: search, identify, duplicates and admin queries against the serving alias, and the HTTP API over them."""
