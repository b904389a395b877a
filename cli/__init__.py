"""The `permitwatch` command line (cli/main.py)."""

import os

# polars allocates through its own jemalloc, which by default keeps freed pages for 10 s before giving them back. A
# nightly run frees and allocates hundreds of MB from stage to stage and from export to export (several at once), so
# the kept pages add a quarter to its peak memory. Giving them back at once costs about 2 s of system time on a
# million-case night. jemalloc reads this setting when polars is loaded, so it is set here, before any command
# imports polars (the flow runs `permitwatch serve` starts inherit it); a value already in the environment wins.
ALLOCATOR_SETTING = "_RJEM_MALLOC_CONF"
ALLOCATOR_DEFAULT = "dirty_decay_ms:0,muzzy_decay_ms:0"
os.environ.setdefault(ALLOCATOR_SETTING, ALLOCATOR_DEFAULT)
