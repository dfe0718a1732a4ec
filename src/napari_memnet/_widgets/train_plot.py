"""Small dependency-free plots for the Train widget, drawn with ``QPainter``.

* ``LinePlot``: named line series against the training step (optionally a
  log10 y axis, for losses), horizontal reference lines, a legend;
* ``WeightBars``: the learned memory-block weights ``w_m`` as labelled bars;
* ``LiveView``: both plots and the bars, fed the training engine's events.

matplotlib is not a dependency of napari-memnet, so these are plain Qt widgets
(a few hundred points each; they repaint only when data arrive).
"""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

PALETTE = ("#f0c419", "#4fc3f7", "#ef5350", "#81c784", "#ba68c8", "#ffb74d", "#90a4ae", "#f06292")
MAX_POINTS = 1500  # per series; older points are thinned out beyond this
PSNR_TITLE = "validation PSNR (dB) vs step"
SELF_SUPERVISED_TITLE = "self-supervised validation: -10 log10(MSE) vs noisy targets (dB)"


def _nice_step(span: float, ticks: int = 4) -> float:
    """A 1/2/5 x 10^k step giving about ``ticks`` intervals over ``span``."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.3g}"
    return f"{value:.4g}"


class LinePlot(QWidget):
    """Line series y(step). ``append(name, x, y)`` adds a point; ``set_hline`` a reference level."""

    def __init__(self, title: str, *, log_y: bool = False, y_label: str = "", parent=None):
        super().__init__(parent)
        self.title = title
        self.log_y = log_y
        self.y_label = y_label
        self._series: dict[str, dict] = {}
        self._hlines: dict[str, dict] = {}
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    # ----------------------------------------------------------------- data
    def append(self, name: str, x: float, y: float, *, color: str | None = None, width: float = 1.5) -> None:
        if y is None or not math.isfinite(float(y)) or (self.log_y and y <= 0):
            return
        s = self._series.get(name)
        if s is None:
            color = color or PALETTE[len(self._series) % len(PALETTE)]
            s = self._series[name] = {"points": [], "color": color, "width": width}
        s["points"].append((float(x), float(y)))
        if len(s["points"]) > MAX_POINTS:  # keep the first and the newest points, thin the middle
            pts = s["points"]
            s["points"] = pts[:1] + pts[1:-200:2] + pts[-200:]
        self.update()

    def set_hline(self, name: str, y: float | None, *, color: str = "#bdbdbd") -> None:
        if y is None or not math.isfinite(float(y)):
            self._hlines.pop(name, None)
        else:
            self._hlines[name] = {"y": float(y), "color": color}
        self.update()

    def clear(self) -> None:
        self._series.clear()
        self._hlines.clear()
        self.update()

    def series(self, name: str) -> list[tuple[float, float]]:
        """The points of one series (empty if it has none)."""
        return list(self._series.get(name, {}).get("points", []))

    @property
    def series_names(self) -> list[str]:
        return list(self._series)

    def hline(self, name: str) -> float | None:
        h = self._hlines.get(name)
        return None if h is None else h["y"]

    # ----------------------------------------------------------------- drawing
    def _ty(self, y: float) -> float:
        return math.log10(y) if self.log_y else y

    def _ranges(self):
        xs = [p[0] for s in self._series.values() for p in s["points"]]
        ys = [self._ty(p[1]) for s in self._series.values() for p in s["points"]]
        ys += [self._ty(h["y"]) for h in self._hlines.values() if not self.log_y or h["y"] > 0]
        if not xs:
            return None
        x0, x1 = min(xs), max(xs)
        y0, y1 = min(ys), max(ys)
        if x1 == x0:
            x1 = x0 + 1
        pad = (y1 - y0) * 0.08 or (abs(y0) * 0.05 or 0.5)
        return x0, x1, y0 - pad, y1 + pad

    def paintEvent(self, _event):  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#262930"))
        font = QFont(p.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        fm = p.fontMetrics()
        left, right, top, bottom = fm.horizontalAdvance("-0.0000") + 8, 8, fm.height() + 6, fm.height() + 8
        plot = QRectF(left, top, max(10, self.width() - left - right), max(10, self.height() - top - bottom))
        p.setPen(QColor("#e0e0e0"))
        p.drawText(QRectF(0, 0, self.width(), top), Qt.AlignmentFlag.AlignCenter, self.title)
        p.setPen(QPen(QColor("#5c5f66"), 1))
        p.drawRect(plot)
        ranges = self._ranges()
        if ranges is None:
            p.setPen(QColor("#9e9e9e"))
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no data yet")
            p.end()
            return
        x0, x1, y0, y1 = ranges

        def to_px(x, y):
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (self._ty(y) - y0) / (y1 - y0) * plot.height())

        # ticks (a log axis gets its ticks at round values of the data itself)
        p.setPen(QColor("#9e9e9e"))
        if self.log_y:
            lo, hi = 10 ** y0, 10 ** y1
            ystep = _nice_step(hi - lo)
            ticks = [t * ystep for t in range(math.ceil(lo / ystep), math.floor(hi / ystep) + 1) if t > 0]
            ticks = [(math.log10(t), t) for t in ticks]
        else:
            ystep = _nice_step(y1 - y0)
            ticks = [(t * ystep, t * ystep) for t in range(math.ceil(y0 / ystep), math.floor(y1 / ystep) + 1)]
        for pos, value in ticks:
            py = plot.bottom() - (pos - y0) / (y1 - y0) * plot.height()
            p.drawText(QRectF(0, py - fm.height() / 2, left - 4, fm.height()),
                       Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, _fmt(value))
            p.drawLine(QPointF(plot.left(), py), QPointF(plot.left() + 3, py))
        xstep = max(1.0, _nice_step(x1 - x0))
        t = math.ceil(x0 / xstep) * xstep
        while t <= x1:
            px = plot.left() + (t - x0) / (x1 - x0) * plot.width()
            p.drawText(QRectF(px - 30, plot.bottom() + 2, 60, fm.height()), Qt.AlignmentFlag.AlignHCenter, f"{t:g}")
            t += xstep
        # reference lines, then the series
        for name, h in self._hlines.items():
            if self.log_y and h["y"] <= 0:
                continue
            pen = QPen(QColor(h["color"]), 1.2, Qt.PenStyle.DashLine)
            p.setPen(pen)
            py = to_px(x0, h["y"]).y()
            p.drawLine(QPointF(plot.left(), py), QPointF(plot.right(), py))
        p.setClipRect(plot)
        for s in self._series.values():
            pts = s["points"]
            p.setPen(QPen(QColor(s["color"]), s["width"]))
            if len(pts) == 1:
                p.drawEllipse(to_px(*pts[0]), 2.5, 2.5)
                continue
            path = QPainterPath(to_px(*pts[0]))
            for x, y in pts[1:]:
                path.lineTo(to_px(x, y))
            p.drawPath(path)
        p.setClipping(False)
        # legend
        entries = [(n, s["color"], Qt.PenStyle.SolidLine) for n, s in self._series.items()]
        entries += [(n, h["color"], Qt.PenStyle.DashLine) for n, h in self._hlines.items()]
        lx, ly = plot.left() + 6, plot.top() + 4
        for name, color, style in entries:
            text = name
            w = fm.horizontalAdvance(text) + 22
            if lx + w > plot.right():
                lx, ly = plot.left() + 6, ly + fm.height()
            p.setPen(QPen(QColor(color), 2, style))
            p.drawLine(QPointF(lx, ly + fm.height() / 2), QPointF(lx + 14, ly + fm.height() / 2))
            p.setPen(QColor("#e0e0e0"))
            p.drawText(QPointF(lx + 17, ly + fm.ascent()), text)
            lx += w + 6
        p.end()


class WeightBars(QWidget):
    """The memory-block weights ``w_m`` of a multi-supervised MemNet, one bar each."""

    def __init__(self, title: str = "learned weights w_m", parent=None):
        super().__init__(parent)
        self.title = title
        self.weights: list[float] = []
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_weights(self, weights) -> None:
        self.weights = [float(w) for w in (weights or [])]
        self.update()

    def text(self) -> str:
        """The weights as one line of text (also the widget's tooltip)."""
        return "  ".join(f"w{i + 1}={w:.3f}" for i, w in enumerate(self.weights))

    def paintEvent(self, _event):  # noqa: N802 (Qt API)
        p = QPainter(self)
        p.fillRect(self.rect(), QColor("#262930"))
        font = QFont(p.font())
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        p.setFont(font)
        fm = p.fontMetrics()
        p.setPen(QColor("#e0e0e0"))
        p.drawText(QRectF(0, 0, self.width(), fm.height() + 2), Qt.AlignmentFlag.AlignCenter, self.title)
        self.setToolTip(self.text())
        if not self.weights:
            p.setPen(QColor("#9e9e9e"))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "(multi-supervised MemNet only)")
            p.end()
            return
        n = len(self.weights)
        top, bottom = fm.height() * 2 + 4, self.height() - fm.height() - 4
        span = max(max(abs(w) for w in self.weights), 1e-9)
        slot = (self.width() - 8) / n
        for i, w in enumerate(self.weights):
            h = abs(w) / span * (bottom - top)
            x = 4 + i * slot
            p.fillRect(QRectF(x + slot * 0.15, bottom - h, slot * 0.7, h), QColor(PALETTE[(i + 1) % len(PALETTE)]))
            p.setPen(QColor("#e0e0e0"))
            p.drawText(QRectF(x, bottom - h - fm.height() - 1, slot, fm.height()), Qt.AlignmentFlag.AlignHCenter,
                       f"{w:.3f}")
            p.drawText(QRectF(x, bottom + 2, slot, fm.height()), Qt.AlignmentFlag.AlignHCenter, f"w{i + 1}")
        p.end()


class LiveView(QWidget):
    """Loss plot (total, smoothed, per-branch y_m), validation PSNR against the base model, and w_m.

    ``show_event(event)`` takes the training engine's ``Step``/``Validation`` events
    (anything else is ignored); ``clear()`` starts a new run."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss_plot = LinePlot("training loss vs step (log scale)", log_y=True)
        self.psnr_plot = LinePlot(PSNR_TITLE)
        self.weight_bars = WeightBars()
        self.weights_text = QLabel("")
        self.weights_text.setWordWrap(True)
        self._ema = None  # exponential moving average of the loss (the raw loss is noisy)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.loss_plot, self.psnr_plot, self.weight_bars, self.weights_text):
            layout.addWidget(w)

    def clear(self) -> None:
        self._ema = None
        self.loss_plot.clear()
        self.psnr_plot.clear()
        self.psnr_plot.title = PSNR_TITLE
        self.weight_bars.set_weights([])
        self.weights_text.setText("")

    def show_event(self, event) -> None:
        kind = getattr(event, "kind", None)
        if kind == "step":
            self.loss_plot.append("loss", event.step, event.loss, color="#8d7a2e", width=1.0)
            self._ema = event.loss if self._ema is None else 0.9 * self._ema + 0.1 * event.loss
            self.loss_plot.append("loss (smoothed)", event.step, self._ema, color="#f0c419", width=2.0)
            for i, b in enumerate(event.branch_losses):
                self.loss_plot.append(f"y{i + 1}", event.step, b, width=1.0)
            if event.branch_weights:
                self.weight_bars.set_weights(event.branch_weights)
                self.weights_text.setText("w_m: " + self.weight_bars.text())
        elif kind == "validation":
            if getattr(event, "self_supervised_loss", None) is not None:  # noisy images alone: no clean PSNR
                self.loss_plot.append("validation (self-supervised)", event.step, event.self_supervised_loss,
                                      color="#ef5350", width=2.0)
                self.psnr_plot.title = SELF_SUPERVISED_TITLE
            self.psnr_plot.append("model", event.step, event.psnr, color="#4fc3f7", width=2.0)
            self.psnr_plot.set_hline("base model", event.base_model_psnr, color="#81c784")
            self.psnr_plot.set_hline("input", event.baseline_psnr, color="#9e9e9e")
