"""nugen-etl: history of the Nugen "List Aligned Models" API as Delta Lake tables and a BI-ready warehouse."""

__version__ = "0.2.0"
