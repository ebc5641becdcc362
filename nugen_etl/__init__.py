"""nugen-etl: history of the Nugen 'List Aligned Models' API as Parquet and a BI-ready warehouse."""

__version__ = "0.1.0"
