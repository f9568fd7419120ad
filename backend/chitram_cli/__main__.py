"""`python -m chitram_cli`, the same as the `chitram` script."""

from chitram_cli.main import run

run()
