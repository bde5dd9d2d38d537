"""Entry point: `python run_pipeline.py --input crm=GLOB ... [--runner DirectRunner]`."""
import sys

from singleview.pipelines.single_view import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
