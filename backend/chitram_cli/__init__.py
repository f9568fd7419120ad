"""`chitram`: upload to, list and delete from a Chitram server from the command line (see `main`)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("chitram")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0"
