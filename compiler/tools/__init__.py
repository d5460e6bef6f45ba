"""The hardware engineer's toolbox behind the CLI: check, doctor, debug, verify, report, diff,
view, export and resumable stages. Each module has one public function per command; the
``tapeout`` subcommands in ``compiler/cli_tools.py`` are thin wrappers around them."""
