"""Print Arrow's memory pool before anything, after a backfill through the pipeline's API, and after a
CLI command: the pipeline leaves the pool alone, the CLI (an entry point) switches it."""

import sys
from datetime import date
from pathlib import Path

import pyarrow as pa

from nugen_etl.cli import main as cli
from nugen_etl.config import parse_config
from nugen_etl.pipeline import backfill


def main(root: Path) -> None:
    before = pa.default_memory_pool().backend_name
    config = parse_config(
        {"storage": {"root": str(root)}, "accounts": [{"id": "a", "api_key_env": "K"}]}, base_dir=root, environ={"K": "x"}
    )
    backfill(config, first=date(2026, 1, 1), last=date(2026, 1, 1))
    after_pipeline = pa.default_memory_pool().backend_name
    (root / "nugen.toml").write_text(f'[storage]\nroot = "{root}"\n[[accounts]]\nid = "a"\napi_key_env = "K"\n')
    cli(["migrate", "--config", str(root / "nugen.toml")])
    print(before, after_pipeline, pa.default_memory_pool().backend_name)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
