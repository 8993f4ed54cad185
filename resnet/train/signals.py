"""Ctrl-C and SIGTERM as requests to stop after the current step."""
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """While active, the first SIGINT or SIGTERM is recorded in `received`
    instead of stopping the process; a second SIGINT (a second Ctrl-C)
    ends the process at once, exit status 130, even while the main thread
    is inside a `Session.run`. SIGTERMs never do: schedulers and our own
    launcher may send one twice, and each asks for a save. Outside the
    main thread, where Python cannot handle signals, it does nothing.

        with StopOnSignal() as stop:
            while work_left and not stop.received:
                do_one_step()

    Python runs a signal's handler in the main thread between bytecodes,
    so signals during a step would wait for its end: a thread reads them
    from the wakeup fd (`signal.set_wakeup_fd`) as they come, and passes
    them on to a wakeup fd set before (asyncio's, say).
    """

    def __init__(self):
        self.received = None
        self._previous = {}
        self._watcher = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        read, write = os.pipe()
        os.set_blocking(write, False)
        self._watcher = threading.Thread(target=self._watch, args=(read,),
                                         daemon=True, name="stop-on-signal")
        self._wakeup = (signal.set_wakeup_fd(write, warn_on_full_buffer=False),
                        write)
        self._watcher.start()
        self._previous = {s: signal.signal(s, self._handle)
                          for s in STOP_SIGNALS}
        _active.add(self)
        return self

    def _handle(self, signum, frame):
        self.received = self.received or signal.Signals(signum)

    def _watch(self, read):
        """The signals as they arrive: the first stop signal recorded, a
        second SIGINT ends the process."""
        interrupts, previous = 0, self._wakeup[0]
        with os.fdopen(read, "rb", buffering=0) as pipe:
            while byte := pipe.read(1):
                if previous >= 0:
                    try:
                        os.write(previous, byte)
                    except OSError:  # full or closed: its owner's loss
                        pass
                signum = byte[0]
                if signum in STOP_SIGNALS:
                    self.received = self.received or signal.Signals(signum)
                interrupts += signum == signal.SIGINT
                if interrupts == 2:
                    os._exit(128 + signal.SIGINT)

    def __exit__(self, *exc_info):
        if not self._watcher:
            return
        _active.discard(self)
        previous, write = self._wakeup
        signal.set_wakeup_fd(previous)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        os.close(write)  # the watcher reads the end and stops
        self._watcher.join()


_active = set()


def _forget_in_child():
    """A process forked while a StopOnSignal is active must not write its
    signals into the parent's pipe (a Ctrl-C to both would count twice)."""
    if _active:
        signal.set_wakeup_fd(-1)
        for stop in _active:
            os.close(stop._wakeup[1])  # or the parent's watcher waits for it
        _active.clear()


os.register_at_fork(after_in_child=_forget_in_child)
