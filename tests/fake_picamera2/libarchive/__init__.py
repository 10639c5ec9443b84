"""Stand-in for ``libarchive`` (libarchive-c; apt ``python3-libarchive-c``)."""
