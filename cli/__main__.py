"""`python -m autoaug_cli` runs the `autoaug` command."""
from autoaug_cli.app import main

main()
