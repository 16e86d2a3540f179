"""The ``xray`` command line. Each command imports what it needs when it runs, so
``xray --help`` loads neither the server stack nor the database driver."""
