//! Inline SVG bar charts: one bar (or one stack) per day, every number also written as
//! text (a label over each bar, a `<title>` on each segment, the totals in the legend), so
//! that the chart reads without a mouse and survives printing.

use std::fmt::Write as _;

use super::facts::Daily;
use super::html::text;

/// Width of one day's slot, in SVG units.
const SLOT: usize = 32;
/// Space left of the bars for the y axis and its label.
const LEFT: usize = 56;
/// Height of the plotting area.
const PLOT: usize = 160;
/// Space above the plotting area (for the value labels).
const TOP: usize = 24;
/// Space below it (for the day labels and the x axis label).
const BOTTOM: usize = 70;
/// Width of one legend entry.
const LEGEND: usize = 190;
/// Colours of the series, in order (the legend names them).
const PALETTE: [&str; 8] = [
    "#2b6cb0", "#c05621", "#2f855a", "#9b2c2c", "#6b46c1", "#b7791f", "#2c7a7b", "#4a5568",
];

/// A chart of `daily` (stacked when it has several series), with `id` on the `<svg>`;
/// `what` names one unit ("changes") for the axis, the titles and the legend.
pub fn bars(id: &str, daily: &Daily, what: &str) -> String {
    if daily.is_empty() {
        return format!(
            "<p class=\"empty\" id=\"{id}\">No {} in this period.</p>\n",
            text(what)
        );
    }
    let days = daily.days.len();
    let totals: Vec<u64> = (0..days)
        .map(|i| daily.series.iter().map(|(_, values)| values[i]).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    // Wide enough for the bars, and for three legend entries and the axis label.
    let width = (LEFT + days * SLOT + 16).max(LEFT + 3 * LEGEND);
    let height = TOP + PLOT + BOTTOM + 24 * daily.series.len().div_ceil(3);
    let scale = |n: u64| (n as f64 * PLOT as f64 / max as f64).round() as usize;
    let base = TOP + PLOT;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg id=\"{id}\" class=\"chart\" role=\"img\" viewBox=\"0 0 {width} {height}\" \
         width=\"{width}\" height=\"{height}\">"
    );
    let _ = writeln!(svg, "<title>{} per day (UTC)</title>", text(what));
    // The y axis: a line, ticks at 0 and at the maximum, and its label.
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{base}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{base}\" x2=\"{}\" y2=\"{base}\"/>",
        LEFT + days * SLOT
    );
    for tick in [0, max] {
        let y = base - scale(tick);
        let _ = writeln!(
            svg,
            "<text class=\"tick\" x=\"{}\" y=\"{}\" text-anchor=\"end\">{tick}</text>",
            LEFT - 6,
            y + 4
        );
    }
    let _ = writeln!(
        svg,
        "<text class=\"axis-label\" transform=\"translate(14 {}) rotate(-90)\" \
         text-anchor=\"middle\">{} per day</text>",
        TOP + PLOT / 2,
        text(what)
    );
    // Label every day while they fit, else every n-th.
    let every = days.div_ceil(31).max(1);
    for (i, day) in daily.days.iter().enumerate() {
        let x = LEFT + i * SLOT;
        let mut y = base;
        for (s, (name, values)) in daily.series.iter().enumerate() {
            let value = values[i];
            if value == 0 {
                continue;
            }
            let h = scale(value).max(1);
            y -= h;
            let _ = writeln!(
                svg,
                "<rect class=\"bar\" data-day=\"{day}\" data-series=\"{name}\" data-value=\"{value}\" \
                 x=\"{}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{}\">\
                 <title>{day}: {value} {name}</title></rect>",
                x + 4,
                SLOT - 8,
                PALETTE[s % PALETTE.len()],
                day = text(day),
                name = text(name),
            );
        }
        if totals[i] > 0 {
            let _ = writeln!(
                svg,
                "<text class=\"value\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + SLOT / 2,
                y - 4,
                totals[i]
            );
        }
        if i % every == 0 {
            let _ = writeln!(
                svg,
                "<text class=\"day\" transform=\"translate({} {}) rotate(-45)\" \
                 text-anchor=\"end\">{}</text>",
                x + SLOT / 2 + 4,
                base + 14,
                text(day.get(5..).unwrap_or(day))
            );
        }
    }
    let _ = writeln!(
        svg,
        "<text class=\"axis-label\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">day (UTC, month-day)</text>",
        LEFT + (days * SLOT).max(2 * LEGEND) / 2,
        base + 60
    );
    // The legend: one swatch and total per series, three to a line.
    for (s, (name, values)) in daily.series.iter().enumerate() {
        let x = LEFT + (s % 3) * LEGEND;
        let y = base + BOTTOM + 8 + (s / 3) * 24;
        let total: u64 = values.iter().sum();
        let _ = writeln!(
            svg,
            "<g class=\"legend\"><rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}: {total}</text></g>",
            PALETTE[s % PALETTE.len()],
            x + 18,
            y + 11,
            text(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}
