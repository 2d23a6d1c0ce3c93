//! URL policy shared by the auth and FHIR clients.

use std::net::IpAddr;

use url::Url;

use crate::error::{Error, ErrorKind};

/// Whether `url`'s host is a loopback address (`127.0.0.0/8`, `::1`, or `localhost`).
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(domain)) => {
            domain.eq_ignore_ascii_case("localhost")
                || domain.to_ascii_lowercase().ends_with(".localhost")
        }
        None => false,
    }
}

/// Parses `text` as a URL for `what` (used in the error), and enforces the transport rule: `https`
/// everywhere, plain `http` only to loopback hosts.
pub(crate) fn parse_secure_url(text: &str, what: &str) -> Result<Url, Error> {
    let url = Url::parse(text)
        .map_err(|e| Error::config(format!("{what} `{text}` is not a valid URL")).with_source(e))?;
    check_secure_url(&url, what)?;
    Ok(url)
}

/// Refuses `http://` to non-loopback hosts and any scheme other than http(s).
pub(crate) fn check_secure_url(url: &Url, what: &str) -> Result<(), Error> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(Error::new(
            ErrorKind::InsecureUrl,
            format!(
                "{what} `{url}` uses plain http to a non-loopback host: tokens and patient data must travel over https"
            ),
        )),
        other => Err(Error::new(
            ErrorKind::InsecureUrl,
            format!("{what} `{url}` has unsupported scheme `{other}`: use https"),
        )),
    }
}

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.origin() == b.origin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_on_loopback() {
        for ok in [
            "https://fhir.epic.com/interconnect-fhir-oauth/api/FHIR/R4",
            "http://127.0.0.1:8080/x",
            "http://127.1.2.3/x",
            "http://[::1]:9/x",
            "http://localhost:1/x",
        ] {
            assert!(parse_secure_url(ok, "base URL").is_ok(), "{ok}");
        }
        for bad in [
            "http://fhir.epic.com/x",
            "http://10.0.0.1/x",
            "http://localhost.evil.com/x",
            "ftp://127.0.0.1/x",
        ] {
            let err = parse_secure_url(bad, "base URL").expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InsecureUrl, "{bad}");
            assert!(err.to_string().contains("base URL"), "{err}");
        }
        assert_eq!(
            parse_secure_url("not a url", "token URL")
                .expect_err("bad")
                .kind(),
            ErrorKind::Config
        );
    }

    #[test]
    fn origins() {
        let a = Url::parse("https://a.example/x").expect("url");
        assert!(same_origin(
            &a,
            &Url::parse("https://a.example:443/y?z").expect("url")
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("https://b.example/x").expect("url")
        ));
        assert!(!same_origin(
            &a,
            &Url::parse("http://a.example/x").expect("url")
        ));
    }
}
