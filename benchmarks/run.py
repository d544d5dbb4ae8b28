"""Run the benchmark of the README: `python benchmarks/run.py [--out DIR] [--quick] [--only TEXT]`.

The same as `losslab bench`; install the peers first with `pip install -e ".[bench]"`.
"""

from losslab.bench import main

if __name__ == "__main__":
    raise SystemExit(main())
