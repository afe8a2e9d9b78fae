"""The `vireid` command line. One module per command, registered in `main.COMMANDS`."""
