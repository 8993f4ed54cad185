"""Ctrl-C and SIGTERM as requests to stop after the current step."""
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """While active, the first SIGINT or SIGTERM is recorded in `received`
    instead of stopping the process; a second one stops the process at
    once (exit status 128 + its number), even while the main thread is
    inside a `Session.run`. Outside the main thread, where Python cannot
    handle signals, it does nothing.

        with StopOnSignal() as stop:
            while work_left and not stop.received:
                do_one_step()

    Python runs a signal's handler in the main thread between bytecodes,
    so two signals during one step would both wait for its end: a thread
    reads them from the wakeup fd (`signal.set_wakeup_fd`) as they come.
    """

    def __init__(self):
        self.received = None
        self._previous = {}
        self._watcher = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        self._previous = {s: signal.signal(s, self._handle)
                          for s in STOP_SIGNALS}
        read, write = os.pipe()
        os.set_blocking(write, False)
        self._wakeup = (signal.set_wakeup_fd(write, warn_on_full_buffer=False),
                        write)
        self._watcher = threading.Thread(target=self._watch, args=(read,),
                                         daemon=True, name="stop-on-signal")
        self._watcher.start()
        return self

    def _handle(self, signum, frame):
        self.received = self.received or signal.Signals(signum)

    def _watch(self, read):
        """The signals as they arrive: the first recorded, the second
        ends the process."""
        count = 0
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while byte := pipe.read(1):
                signum = byte[0]
                if signum not in STOP_SIGNALS:
                    continue
                count += 1
                self.received = self.received or signal.Signals(signum)
                if count == 2:
                    os._exit(128 + signum)

    def __exit__(self, *exc_info):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        if self._watcher:
            previous, write = self._wakeup
            signal.set_wakeup_fd(previous)
            os.close(write)  # the watcher reads the end and stops
            self._watcher.join()
