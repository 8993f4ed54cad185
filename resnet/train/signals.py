"""Ctrl-C and SIGTERM as requests to stop after the current step."""
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """While active, the first SIGINT or SIGTERM is recorded in `received`
    instead of stopping the process; after it, a second one stops the
    process at once (the default action). Outside the main thread, where
    Python cannot handle signals, it does nothing.

        with StopOnSignal() as stop:
            while work_left and not stop.received:
                do_one_step()
    """

    def __init__(self):
        self.received = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle)
                              for s in STOP_SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.received = signal.Signals(signum)
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_DFL)

    def __exit__(self, *exc_info):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
