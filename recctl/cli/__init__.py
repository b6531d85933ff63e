"""The ``recctl`` command line: thin Typer commands over the library's stage functions."""
