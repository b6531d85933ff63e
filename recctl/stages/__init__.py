"""One library function per pipeline stage: ``run_<stage>(cfg, ...) -> Manifest``.

The CLI calls exactly one of these per command; a notebook can call them too.
"""
