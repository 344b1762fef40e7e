"""The Keras progress bar: `cur/total ━━━━━━━━━━━━━━━━━━━━ ETA 1ms/step - accuracy: ... - loss: ...`.

Redrawn in place ('\\r') when stdout is a terminal or a Jupyter kernel; otherwise (logs, pipes)
one line is written per epoch, never control characters.
"""
import sys
import time


def dynamic_display(stream):
    isatty = getattr(stream, "isatty", None)
    return bool((isatty and isatty()) or "ipykernel" in sys.modules)


def format_value(v):
    return f"{v:.4f}" if abs(v) > 1e-3 else f"{v:.4e}"


def _format_time(seconds):
    if seconds >= 3600:
        return "%d:%02d:%02d" % (seconds // 3600, (seconds % 3600) // 60, seconds % 60)
    if seconds >= 60:
        return "%d:%02d" % (seconds // 60, seconds % 60)
    return "%ds" % seconds


def _per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


class Progbar:
    """Progress of `target` steps. `update(current, values, finalize)`; values is a dict."""

    width = 20

    def __init__(self, target, verbose=1, stream=None, interval=0.05):
        self.target = target
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.interval = interval
        self.dynamic = dynamic_display(self.stream)
        self._start = time.perf_counter()
        self._last_draw = 0.0
        self._prev_width = 0

    def update(self, current, values=None, finalize=False):
        now = time.perf_counter()
        if self.verbose == 0:
            return
        if self.verbose == 2 or not self.dynamic:
            if finalize:
                self._write(self._line(current, values, now, final=True, bar=self.verbose == 1) + "\n")
            return
        if not finalize and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self._line(current, values, now, final=finalize, bar=True)
        pad = max(0, self._prev_width - len(line))
        self._write("\r" + line + " " * pad + ("\n" if finalize else ""))
        self._prev_width = len(line)

    def _line(self, current, values, now, final, bar):
        elapsed = now - self._start
        if self.target is None:  # a generator's first pass: the number of steps is not known yet
            line = f"{current:>7}/Unknown {_format_time(elapsed)} {_per_step(elapsed / max(current, 1))}"
            for k in sorted(values or {}):
                line += f" - {k}: {format_value(values[k])}"
            return line
        digits = len(str(self.target))
        parts = [f"{current:>{digits}}/{self.target}"]
        if bar:
            done = int(self.width * current / self.target) if self.target else self.width
            bar_txt = "\33[32m" + "━" * done + "\33[37m" + "━" * (self.width - done) + "\33[0m"
            parts.append(bar_txt if self.dynamic else "━" * self.width)
        # the time so far over the steps so far: updates come every `interval` seconds, not every
        # step, and there is no slow first step (no tracing) for Keras's first-step exclusion to hide
        per = elapsed / max(current, 1)
        if final:
            time_txt = _format_time(elapsed)
        else:
            time_txt = _format_time(per * (self.target - current))
        if bar:
            parts.append(f"{time_txt} {_per_step(per)}")
            line = " ".join(parts)
        else:
            line = " - ".join(parts + [time_txt, _per_step(per)])
        for k in sorted(values or {}):
            line += f" - {k}: {format_value(values[k])}"
        return line

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()
