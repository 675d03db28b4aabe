import signal
import sys

from .cli import main

# `python -m checker ... | head` ends quietly, as other command-line tools do
if hasattr(signal, "SIGPIPE"):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)

sys.exit(main())
