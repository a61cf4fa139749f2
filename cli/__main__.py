"""``python -m cli …`` runs the `twinstream` command line (what the console script does)."""

from cli.main import main

main()
