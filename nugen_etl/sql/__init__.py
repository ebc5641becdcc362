"""Versioned warehouse SQL, shipped as package data (read with ``importlib.resources``).

``NNN_name.sql`` files are shared by every engine; ``duckdb/NNN_name.sql`` and
``postgresql/NNN_name.sql`` replace the shared file of the same version for that engine only.
``bootstrap.sql`` creates the schema and the migrations table before any migration runs.
"""
