"""Run the command line tool as ``python -m spoolgate``."""

from spoolgate.cli import main

raise SystemExit(main())
