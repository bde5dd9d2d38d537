"""python -m singleview.serving [--host H] [--port P] [--mongo_uri URI] [--database NAME] [--dev]"""
from __future__ import annotations

import argparse
import logging
import sys

from .config import ConfigError, Settings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m singleview.serving",
                                description="Serve the customer single view over HTTP.")
    p.add_argument("--host", help="bind address (env SINGLEVIEW_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env SINGLEVIEW_PORT, default 8000)")
    p.add_argument("--mongo_uri", "--mongo-uri", dest="mongo_uri",
                   help="MongoDB URI (env MONGODB_URI, default mongodb://127.0.0.1:27017)")
    p.add_argument("--database", help="database (env SINGLEVIEW_DATABASE, default singleview)")
    p.add_argument("--dev", action="store_true", default=None,
                   help="development mode: allow running without SINGLEVIEW_API_KEYS (loud warning)")
    p.add_argument("--log-level", default="info",
                   help="debug, info, warning or error (pymongo's command log stays off: it prints documents)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # pymongo's debug log prints whole commands and documents: customers' PII.
    logging.getLogger("pymongo").setLevel(max(logging.getLogger().level, logging.INFO))
    try:
        settings = Settings.from_env(host=args.host, port=args.port, mongo_uri=args.mongo_uri,
                                     database=args.database, dev=args.dev)
        from .app import create_app
        app = create_app(settings)
    except ConfigError as exc:
        print(f"singleview.serving: refusing to start: {exc}", file=sys.stderr)
        return 2
    import uvicorn
    # The app logs each request by route template (serving.metrics); uvicorn's own
    # access log would print the raw path, and with it customers' emails.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level.lower(),
                access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
