//! The blood pressure chart: an inline SVG of systolic and diastolic pressure over time, from
//! LOINC 85354-9 blood pressure panels (components 8480-6 and 8462-4).

use std::fmt::Write as _;

use epic_fhir::model::{DateTime, Observation};
use time::{OffsetDateTime, UtcOffset};

use crate::pages::escape;

pub(crate) const LOINC: &str = "http://loinc.org";
/// Blood pressure panel with all children optional.
pub(crate) const PANEL: &str = "85354-9";
pub(crate) const SYSTOLIC: &str = "8480-6";
pub(crate) const DIASTOLIC: &str = "8462-4";

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;
const SYSTOLIC_COLOUR: &str = "#b3261e";
const DIASTOLIC_COLOUR: &str = "#1f5fa8";

/// When an observation was made (a period's start), if it says.
pub(crate) fn effective(observation: &Observation) -> Option<OffsetDateTime> {
    let text = observation.effective_display()?;
    Some(DateTime::parse(text).ok()?.start(UtcOffset::UTC))
}

/// One blood pressure reading.
pub(crate) struct Reading {
    at: OffsetDateTime,
    systolic: f64,
    diastolic: f64,
}

/// The blood pressure panels with both values and a date, oldest first.
pub(crate) fn readings(vitals: &[Observation]) -> Vec<Reading> {
    let mut readings: Vec<Reading> = vitals
        .iter()
        .filter(|o| o.code.has_coding(LOINC, PANEL))
        .filter_map(|o| {
            Some(Reading {
                at: effective(o)?,
                systolic: o.component(LOINC, SYSTOLIC)?.value_quantity()?.0,
                diastolic: o.component(LOINC, DIASTOLIC)?.value_quantity()?.0,
            })
        })
        .collect();
    readings.sort_by_key(|r| r.at);
    readings
}

/// The chart, with a table of the readings for those who cannot see it.
pub(crate) fn blood_pressure(readings: &[Reading]) -> String {
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return r#"<p class="muted">No blood pressure readings on file.</p>"#.to_owned();
    };
    let low = readings
        .iter()
        .map(|r| r.diastolic)
        .fold(f64::MAX, f64::min);
    let high = readings.iter().map(|r| r.systolic).fold(f64::MIN, f64::max);
    let y_min = ((low - 10.0) / 20.0).floor().max(0.0) * 20.0;
    let y_max = ((high + 10.0) / 20.0).ceil() * 20.0;
    let (t0, t1) = (
        first.at.unix_timestamp() as f64,
        last.at.unix_timestamp() as f64,
    );
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let x = |at: OffsetDateTime| {
        if t1 > t0 {
            LEFT + (at.unix_timestamp() as f64 - t0) / (t1 - t0) * plot_width
        } else {
            LEFT + plot_width / 2.0
        }
    };
    let y = |mmhg: f64| TOP + (y_max - mmhg) / (y_max - y_min) * plot_height;

    let label = format!(
        "Blood pressure chart: {} readings from {} to {}; latest {:.0}/{:.0} mmHg",
        readings.len(),
        first.at.date(),
        last.at.date(),
        last.systolic,
        last.diastolic
    );
    let mut svg = format!(
        r#"<svg id="bp-chart" role="img" aria-label="{label}" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" style="max-width:{WIDTH}px" font-family="system-ui, sans-serif" font-size="12">
<title>Blood pressure over time (systolic and diastolic, mmHg)</title>
"#,
        label = escape(&label)
    );
    // Horizontal grid lines and the mmHg axis.
    let mut mmhg = y_min;
    while mmhg <= y_max {
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{mmhg:.0}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y(mmhg) + 4.0,
            y = y(mmhg),
        );
        mmhg += 20.0;
    }
    let _ = writeln!(
        svg,
        r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">mmHg</text>
<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{}" stroke="#555"/>
<line x1="{LEFT}" x2="{}" y1="{}" y2="{}" stroke="#555"/>"##,
        TOP + plot_height / 2.0,
        TOP + plot_height,
        WIDTH - RIGHT,
        TOP + plot_height,
        TOP + plot_height,
    );
    // Date ticks: up to five, evenly spaced in time.
    let ticks: usize = if t1 > t0 { 5 } else { 1 };
    for i in 0..ticks {
        let at = if ticks == 1 {
            first.at
        } else {
            let seconds = t0 + (t1 - t0) * i as f64 / (ticks - 1) as f64;
            OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap_or(first.at)
        };
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#555"/><text x="{x:.1}" y="{}" text-anchor="{anchor}">{}</text>"##,
            TOP + plot_height,
            TOP + plot_height + 5.0,
            TOP + plot_height + 20.0,
            at.date(),
            x = x(at),
            // The first and last labels stay within the chart.
            anchor = match i {
                _ if ticks == 1 => "middle",
                0 => "start",
                i if i == ticks - 1 => "end",
                _ => "middle",
            },
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">Date</text>"#,
        LEFT + plot_width / 2.0,
        HEIGHT - 6.0
    );
    // The two lines, their points (each with its value as a tooltip), and a legend.
    for (name, colour, value) in [
        (
            "Systolic",
            SYSTOLIC_COLOUR,
            (|r: &Reading| r.systolic) as fn(&Reading) -> f64,
        ),
        ("Diastolic", DIASTOLIC_COLOUR, |r: &Reading| r.diastolic),
    ] {
        let points: Vec<String> = readings
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.at), y(value(r))))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline class="bp-line" fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for r in readings {
            let _ = writeln!(
                svg,
                r#"<circle class="bp-point" cx="{:.1}" cy="{:.1}" r="4" fill="{colour}"><title>{name} {:.0} mmHg on {}</title></circle>"#,
                x(r.at),
                y(value(r)),
                value(r),
                r.at.date()
            );
        }
    }
    let _ = writeln!(
        svg,
        r#"<g transform="translate({} 12)"><rect width="12" height="4" y="-6" fill="{SYSTOLIC_COLOUR}"/><text x="16">Systolic</text><rect x="90" width="12" height="4" y="-6" fill="{DIASTOLIC_COLOUR}"/><text x="106">Diastolic</text></g>
</svg>"#,
        WIDTH - RIGHT - 180.0
    );

    svg.push_str(r#"<details><summary>Readings as a table</summary><table><thead><tr><th scope="col">Date</th><th scope="col">Systolic (mmHg)</th><th scope="col">Diastolic (mmHg)</th></tr></thead><tbody>"#);
    for r in readings.iter().rev() {
        let _ = write!(
            svg,
            "<tr><td>{}</td><td>{:.0}</td><td>{:.0}</td></tr>",
            r.at.date(),
            r.systolic,
            r.diastolic
        );
    }
    svg.push_str("</tbody></table></details>");
    svg
}
