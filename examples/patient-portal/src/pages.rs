//! The portal's HTML pages. Every value from the FHIR server goes through [`escape`].

use std::collections::HashSet;
use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use epic_fhir::model::{Observation, Patient};

use crate::Record;
use crate::chart::{self, DIASTOLIC, LOINC, SYSTOLIC};

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; color: #1b1b1b; line-height: 1.45; }
header { display: flex; justify-content: space-between; align-items: center; border-bottom: 3px solid #1f5fa8; }
header form { margin: 0; }
h1 { margin-bottom: .25rem; }
h2 { font-size: 1.15rem; margin: 1.5rem 0 .5rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 0 2rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: 0; }
dt { font-weight: 600; }
dd { margin: 0; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #ddd; }
ul { padding-left: 1.2rem; margin: 0; }
.muted { color: #555; }
.button { display: inline-block; padding: .6rem 1.4rem; background: #1f5fa8; color: #fff; border-radius: 4px; text-decoration: none; font-size: 1.05rem; }
.error { color: #b3261e; font-weight: 600; }
";

/// A whole page; `body` is HTML already escaped.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Patient portal</title>
<style>{STYLE}</style>
</head>
<body>
<header><p><strong>Patient portal</strong> <span class="muted">&middot; example app, synthetic data</span></p></header>
<main>
{body}
</main>
</body>
</html>
"#,
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    response
}

/// An error page.
pub(crate) fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            r#"<h1>{}</h1><p class="error" role="alert">{}</p><p><a href="/">Back to the start</a></p>"#,
            escape(title),
            escape(message)
        ),
    )
}

/// `/`: the login link.
pub(crate) fn home(logged_in: bool) -> Response {
    let action = if logged_in {
        r#"<p><a class="button" href="/summary">View your health summary</a></p>"#
    } else {
        r#"<p><a class="button" href="/login">Log in with MyChart</a></p>"#
    };
    page(
        StatusCode::OK,
        "Welcome",
        &format!(
            "<h1>Welcome</h1><p>See your health summary: vital signs, blood pressure, problems, medications and allergies.</p>{action}"
        ),
    )
}

/// `/summary`.
pub(crate) fn summary(record: &Record) -> Response {
    let patient = &record.patient;
    let name = patient
        .display_name()
        .unwrap_or_else(|| "Unnamed patient".to_owned());
    let mut body = format!(
        r#"<header><h1>{}</h1><form method="post" action="/logout"><button type="submit">Log out</button></form></header>"#,
        escape(&name)
    );
    body.push_str(
        r#"<div class="grid"><section aria-labelledby="about"><h2 id="about">About you</h2>"#,
    );
    body.push_str(&demographics(patient));
    body.push_str(
        r#"</section><section aria-labelledby="vitals"><h2 id="vitals">Latest vital signs</h2>"#,
    );
    body.push_str(&latest_vitals(&record.vitals));
    body.push_str("</section></div>");

    body.push_str(r#"<section aria-labelledby="bp"><h2 id="bp">Blood pressure</h2>"#);
    body.push_str(&chart::blood_pressure(&chart::readings(&record.vitals)));
    body.push_str("</section>");

    let problems = record.conditions.iter().map(|c| {
        let what = c.code.as_ref().and_then(|c| c.text_or_display());
        (what, c.clinical_status_code().map(str::to_owned))
    });
    body.push_str(&list(
        "problems",
        "Problems",
        "No problems on file.",
        problems,
    ));
    let medications = record.medications.iter().map(|m| {
        (
            m.medication_display(),
            m.status.as_ref().map(|s| s.code().to_owned()),
        )
    });
    body.push_str(&list(
        "medications",
        "Medications",
        "No medications on file.",
        medications,
    ));
    let allergies = record.allergies.iter().map(|a| {
        let what = a.code.as_ref().and_then(|c| c.text_or_display());
        let criticality = a
            .criticality
            .as_ref()
            .map(|c| format!("criticality: {}", c.code()));
        (what, criticality)
    });
    body.push_str(&list(
        "allergies",
        "Allergies",
        "No known allergies on file.",
        allergies,
    ));
    page(StatusCode::OK, &name, &body)
}

fn demographics(patient: &Patient) -> String {
    let mut rows = String::from("<dl>");
    let mut row = |label: &str, value: Option<&str>| {
        let value = value.map_or_else(
            || r#"<span class="muted">not recorded</span>"#.to_owned(),
            escape,
        );
        let _ = write!(rows, "<dt>{label}</dt><dd>{value}</dd>");
    };
    row("Gender", patient.gender.as_ref().map(|g| g.code()));
    row(
        "Birth date",
        patient.birth_date.as_ref().map(|d| d.as_str()),
    );
    if let Some(mrn) = patient.mrn() {
        row("MRN", Some(mrn));
    }
    rows.push_str("</dl>");
    rows
}

/// The newest reading of each vital sign, newest first.
fn latest_vitals(vitals: &[Observation]) -> String {
    let mut sorted: Vec<&Observation> = vitals.iter().collect();
    sorted.sort_by_key(|o| std::cmp::Reverse(chart::effective(o)));
    let mut seen = HashSet::new();
    let mut rows = String::new();
    for observation in sorted {
        let what = observation.code_display().unwrap_or("Vital sign");
        if !seen.insert(what.to_owned()) {
            continue;
        }
        let Some(value) = vital_value(observation) else {
            continue;
        };
        let when =
            chart::effective(observation).map_or_else(String::new, |at| at.date().to_string());
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(what),
            escape(&value),
            escape(&when)
        );
    }
    if rows.is_empty() {
        return r#"<p class="muted">No vital signs on file.</p>"#.to_owned();
    }
    format!(
        r#"<table><thead><tr><th scope="col">Measurement</th><th scope="col">Value</th><th scope="col">Date</th></tr></thead><tbody>{rows}</tbody></table>"#
    )
}

/// A vital sign's value with its unit; a blood pressure panel as `systolic/diastolic unit`.
fn vital_value(observation: &Observation) -> Option<String> {
    if let Some(value) = observation.value_display() {
        return Some(value);
    }
    let systolic = observation.component(LOINC, SYSTOLIC)?.value_quantity()?;
    let diastolic = observation.component(LOINC, DIASTOLIC)?.value_quantity()?;
    let unit = match systolic.1 {
        None | Some("mm[Hg]") => "mmHg",
        Some(unit) => unit,
    };
    Some(format!("{}/{} {unit}", systolic.0, diastolic.0))
}

/// A section with a list of `(what, detail)`.
fn list<'a>(
    id: &str,
    title: &str,
    empty: &str,
    items: impl Iterator<Item = (Option<&'a str>, Option<String>)>,
) -> String {
    let mut out = format!(r#"<section aria-labelledby="{id}"><h2 id="{id}">{title}</h2>"#);
    let mut entries = String::new();
    for (what, detail) in items {
        let what = escape(what.unwrap_or("Unnamed"));
        match detail {
            Some(detail) => {
                let _ = write!(
                    entries,
                    r#"<li>{what} <span class="muted">({})</span></li>"#,
                    escape(&detail)
                );
            }
            None => {
                let _ = write!(entries, "<li>{what}</li>");
            }
        }
    }
    if entries.is_empty() {
        let _ = write!(out, r#"<p class="muted">{empty}</p>"#);
    } else {
        let _ = write!(out, "<ul>{entries}</ul>");
    }
    out.push_str("</section>");
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
