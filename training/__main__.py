"""`python -m training`: see training/cli.py."""

from .cli import main

raise SystemExit(main())
