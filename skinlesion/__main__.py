"""`python -m skinlesion ...` is the `skinlesion` command."""

from skinlesion.cli import main

main()
