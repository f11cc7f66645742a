// Small canvas charts for the dashboard: no libraries, crisp on high-DPI screens, colours from the
// page's CSS custom properties (so light and dark themes both work).

/** Colours of the current theme, read from CSS custom properties on <html>. */
function palette() {
  const css = getComputedStyle(document.documentElement);
  const v = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    fg: v("--fg", "#1b1f24"),
    muted: v("--muted", "#57606a"),
    grid: v("--grid", "#d0d7de"),
    ok: v("--ok", "#1a7f37"),
    denied: v("--denied", "#cf222e"),
    error: v("--error-mark", "#6e7781"),
    accent: v("--accent", "#0969da"),
    font: v("--chart-font", "12px system-ui, sans-serif"),
  };
}

/**
 * Sizes the canvas backing store to its CSS box times devicePixelRatio and returns a context
 * drawing in CSS pixels, with the box's width and height.
 */
function prepare(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const rect = canvas.getBoundingClientRect();
  const width = Math.max(1, Math.round(rect.width || canvas.width));
  const height = Math.max(1, Math.round(rect.height || canvas.height));
  if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, width, height);
  return { ctx, width, height };
}

/** A "nice" upper bound for an axis: 1, 2, 5 × 10^n at or above `value`. */
export function niceMax(value) {
  if (!(value > 0)) return 1;
  const exp = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * exp >= value) return step * exp;
  }
  return 10 * exp;
}

/** How many grid steps to split [0, max] into so integer axes get integer labels. */
function integerTicks(max) {
  return [4, 5, 2, 3].find((t) => max >= t && max % t === 0) ?? 1;
}

/** Frame: left axis with `ticks` labels, horizontal grid lines; returns the plot area. */
function frame(ctx, width, height, colors, { max, ticks = 4, format = String, xLabel }) {
  ctx.font = colors.font;
  const labels = Array.from({ length: ticks + 1 }, (_, i) => format((max * i) / ticks));
  const labelWidth = Math.max(...labels.map((l) => ctx.measureText(l).width));
  const area = {
    left: Math.ceil(labelWidth) + 10,
    top: 8,
    right: width - 8,
    bottom: height - (xLabel ? 24 : 8),
  };
  area.width = Math.max(1, area.right - area.left);
  area.height = Math.max(1, area.bottom - area.top);

  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (let i = 0; i <= ticks; i += 1) {
    const y = Math.round(area.bottom - (area.height * i) / ticks) + 0.5;
    ctx.strokeStyle = colors.grid;
    ctx.beginPath();
    ctx.moveTo(area.left, y);
    ctx.lineTo(area.right, y);
    ctx.stroke();
    ctx.fillStyle = colors.muted;
    ctx.fillText(labels[i], area.left - 6, y);
  }
  if (xLabel) {
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.fillText(xLabel, area.left + area.width / 2, height - 2);
  }
  return area;
}

function emptyMessage(ctx, area, colors, text) {
  ctx.fillStyle = colors.muted;
  ctx.textAlign = "center";
  ctx.textBaseline = "middle";
  ctx.fillText(text, area.left + area.width / 2, area.top + area.height / 2);
}

/** A cross (×) centred on x, y: the 429 marker; shape as well as colour tells it apart. */
function cross(ctx, x, y, r) {
  ctx.beginPath();
  ctx.moveTo(x - r, y - r);
  ctx.lineTo(x + r, y + r);
  ctx.moveTo(x + r, y - r);
  ctx.lineTo(x - r, y + r);
  ctx.stroke();
}

/** A hollow diamond centred on x, y: the error marker. */
function diamond(ctx, x, y, r) {
  ctx.beginPath();
  ctx.moveTo(x, y - r);
  ctx.lineTo(x + r, y);
  ctx.lineTo(x, y + r);
  ctx.lineTo(x - r, y);
  ctx.closePath();
  ctx.stroke();
}

/**
 * The burst chart: one slot per request (in completion order) out of `total`; a bar of the
 * remaining quota for allowed requests, a × for 429s, a ◇ for errors.
 *
 * @param {HTMLCanvasElement} canvas
 * @param {{kind: "ok"|"denied"|"error", remaining: number|null}[]} points
 * @param {{total: number, limit: number|null}} options
 */
export function drawBurst(canvas, points, { total, limit }) {
  const colors = palette();
  const { ctx, width, height } = prepare(canvas);
  const seen = points.map((p) => p.remaining).filter((r) => Number.isFinite(r));
  const max = niceMax(Math.max(limit ?? 0, ...seen, 1));
  const area = frame(ctx, width, height, colors, {
    max,
    ticks: integerTicks(max),
    format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
    xLabel: `request (1–${Math.max(total, points.length)})`,
  });
  if (points.length === 0) {
    emptyMessage(ctx, area, colors, "Run a burst to see the quota drain");
    return;
  }

  const slots = Math.max(total, points.length, 1);
  const slot = area.width / slots;
  const barWidth = Math.max(1, Math.min(18, slot * 0.7));
  const y = (v) => area.bottom - (area.height * v) / max;
  const r = Math.max(2.5, Math.min(6, slot * 0.35));

  // The limit, when known.
  if (limit) {
    ctx.strokeStyle = colors.accent;
    ctx.setLineDash([4, 4]);
    ctx.beginPath();
    ctx.moveTo(area.left, Math.round(y(limit)) + 0.5);
    ctx.lineTo(area.right, Math.round(y(limit)) + 0.5);
    ctx.stroke();
    ctx.setLineDash([]);
  }

  points.forEach((p, i) => {
    const cx = area.left + slot * (i + 0.5);
    if (p.kind === "ok") {
      const remaining = Number.isFinite(p.remaining) ? p.remaining : 0;
      const top = y(remaining);
      ctx.fillStyle = colors.ok;
      // A zero-height bar would vanish: keep a 2 px stub so every allowed request shows.
      ctx.fillRect(cx - barWidth / 2, Math.min(top, area.bottom - 2), barWidth, Math.max(2, area.bottom - top));
    } else if (p.kind === "denied") {
      ctx.strokeStyle = colors.denied;
      ctx.lineWidth = 2;
      cross(ctx, cx, area.bottom - r - 2, r);
      ctx.lineWidth = 1;
    } else {
      ctx.strokeStyle = colors.error;
      ctx.lineWidth = 2;
      diamond(ctx, cx, area.bottom - r - 2, r);
      ctx.lineWidth = 1;
    }
  });
}

/**
 * A line chart of values in [0, 1] over time (the hit rate), newest at the right.
 *
 * @param {HTMLCanvasElement} canvas
 * @param {(number|null)[]} values  null where there was nothing to measure
 * @param {{capacity: number}} options  how many samples fit across the chart
 */
export function drawRatio(canvas, values, { capacity }) {
  const colors = palette();
  const { ctx, width, height } = prepare(canvas);
  const area = frame(ctx, width, height, colors, {
    max: 1,
    ticks: 4,
    format: (v) => `${Math.round(v * 100)}%`,
  });
  if (!values.some((v) => v !== null)) {
    emptyMessage(ctx, area, colors, "No cacheable requests yet");
    return;
  }
  const step = area.width / Math.max(1, capacity - 1);
  const offset = capacity - values.length;
  ctx.strokeStyle = colors.accent;
  ctx.fillStyle = colors.accent;
  ctx.lineWidth = 2;
  ctx.beginPath();
  let drawing = false;
  values.forEach((v, i) => {
    if (v === null) {
      drawing = false;
      return;
    }
    const x = area.left + step * (offset + i);
    const yy = area.bottom - area.height * Math.min(1, Math.max(0, v));
    if (drawing) ctx.lineTo(x, yy);
    else ctx.moveTo(x, yy);
    drawing = true;
  });
  ctx.stroke();
  // The latest value as a dot, so a single sample is visible too.
  const lastIndex = values.length - 1;
  const last = values[lastIndex];
  if (last !== null) {
    ctx.beginPath();
    ctx.arc(area.left + step * (offset + lastIndex), area.bottom - area.height * last, 3.5, 0, Math.PI * 2);
    ctx.fill();
  }
  ctx.lineWidth = 1;
}

/**
 * Stacked bars over time: allowed (bottom) and denied (top) per poll interval.
 *
 * @param {HTMLCanvasElement} canvas
 * @param {{allowed: number, denied: number}[]} samples
 * @param {{capacity: number}} options
 */
export function drawTraffic(canvas, samples, { capacity }) {
  const colors = palette();
  const { ctx, width, height } = prepare(canvas);
  const max = niceMax(Math.max(1, ...samples.map((s) => s.allowed + s.denied)));
  const area = frame(ctx, width, height, colors, {
    max,
    ticks: integerTicks(max),
    format: (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)),
  });
  if (samples.length === 0) {
    emptyMessage(ctx, area, colors, "Waiting for the first interval");
    return;
  }
  if (samples.every((s) => s.allowed + s.denied === 0)) {
    emptyMessage(ctx, area, colors, "No gated requests since connecting");
    return;
  }
  const slot = area.width / capacity;
  const barWidth = Math.max(1, slot * 0.75);
  const offset = capacity - samples.length;
  const h = (v) => (area.height * v) / max;
  samples.forEach((s, i) => {
    const x = area.left + slot * (offset + i) + (slot - barWidth) / 2;
    const allowedHeight = h(s.allowed);
    const deniedHeight = h(s.denied);
    ctx.fillStyle = colors.ok;
    ctx.fillRect(x, area.bottom - allowedHeight, barWidth, allowedHeight);
    ctx.fillStyle = colors.denied;
    ctx.fillRect(x, area.bottom - allowedHeight - deniedHeight, barWidth, deniedHeight);
  });
}
