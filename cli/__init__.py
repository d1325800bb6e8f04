"""The `autoaug` command line: typer commands that call the library and render with rich."""
