"""Ctrl-C and SIGTERM as requests to stop after the current step."""
import contextlib
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_END_PROCESS = []  # non-empty inside `second_interrupt_ends_process`


@contextlib.contextmanager
def second_interrupt_ends_process():
    """Within it, a second SIGINT ends the process at once (status 130),
    even inside a step, instead of raising KeyboardInterrupt: for a command
    line's `main`, never for a library or a notebook, whose user would
    lose the interpreter."""
    _END_PROCESS.append(True)
    try:
        yield
    finally:
        _END_PROCESS.pop()


class StopOnSignal:
    """While active, the first SIGINT or SIGTERM is recorded in `received`
    instead of stopping the process; after a second SIGINT (a second
    Ctrl-C) `interrupted_twice` is true and leaving the block raises
    KeyboardInterrupt (a loop checks it after each step), or, within
    `second_interrupt_ends_process`, the process ends at once, even
    inside a `Session.run`. SIGTERMs
    never do: schedulers and our own launcher may send one twice, and
    each asks for a save. Outside the main thread, where Python cannot
    handle signals, it does nothing.

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
        self.interrupted_twice = False
        self._raised = False  # the KeyboardInterrupt of interrupted_twice

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
        # Not raising: TensorFlow calls handlers inside Session.run and
        # prints, then drops, what they raise.
        self.received = self.received or signal.Signals(signum)

    def _watch(self, read):
        """The signals as they arrive (Python calls a handler once for
        signals that come together): the first stop signal recorded, a
        second SIGINT noted, or the process ended."""
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
                if interrupts == 2 and _END_PROCESS:
                    os._exit(128 + signal.SIGINT)
                self.interrupted_twice = interrupts >= 2

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
        if self.interrupted_twice and exc_info[0] is None:
            self.raise_interrupt()

    def raise_interrupt(self):
        """Raises the KeyboardInterrupt of a second SIGINT, once: the loop
        after the step, or leaving the block if the loop did not."""
        if not self._raised:
            self._raised = True
            raise KeyboardInterrupt


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
