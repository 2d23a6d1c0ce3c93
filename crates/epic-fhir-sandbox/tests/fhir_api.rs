//! HTTP-level conformance of the sandbox's FHIR API, against a started [`Sandbox`]: paths and
//! discovery, read/vread/create/update, Epic's search behaviours and warning entries, snapshot
//! paging through `sessionID` links, includes, the search semantics of EPIC.md as the server
//! exposes them, JSON-only content negotiation, and every injected fault.
//!
//! The search engine itself is unit-tested exhaustively in `src/search/tests.rs`; these tests
//! check that the HTTP layer exposes it faithfully, and cover what only exists at that layer.
//! Each test starts its own small sandbox (Epic's seven named patients plus resources the test
//! adds), so tests can change data and faults without disturbing one another.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::{Duration, Instant};

use epic_fhir_sandbox::auth::ScopeSet;
use epic_fhir_sandbox::{
    EPIC_NO_RESULTS, EPIC_OUTCOME_SYSTEM, EPIC_PARAMETER_IGNORED, EPIC_SESSION_EXPIRED, Faults,
    MAX_PAGE_SIZE, Sandbox, SandboxConfig, ScopeGrant,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use support::*;
use url::Url;

/// The client most tests use; it may be granted any read and write scope.
const APP: &str = "fhir-api-app";
/// A second client, to check that search sessions belong to the client that started them.
const OTHER_APP: &str = "fhir-api-other";

/// Epic's named patients used below (ids of Epic's public sandbox).
const DERRICK: &str = "eq081-VQEgP8drUUqCWzHfw3";
const JASON: &str = "eD.LxhDyX35TntF77l7etUA3";
const CAMILA: &str = "erXuFYUfucBZaryVksYEcMg3";
/// The MRN system of Epic's sandbox.
const MRN_SYSTEM: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.0";

/// Epic's "Required search parameter missing from request." code.
const EPIC_REQUIRED_PARAMETER: &str = "4111";
/// Epic's "No parameters are provided in the search request." code.
const EPIC_NO_PARAMETERS: &str = "4110";

const READ_ALL: &str = "system/*.read";
const FHIR_JSON: &str = "application/fhir+json";
const CATEGORY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const LOINC: &str = "http://loinc.org";
const LOCAL: &str = "http://example.org/local-codes";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A started sandbox with two clients that may be granted any read or write scope.
struct Env {
    sandbox: Sandbox,
    key: TestKey,
    http: reqwest::Client,
}

/// One HTTP response with its body parsed as JSON (a JSON string holding the text otherwise).
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Reply {
    /// A response header as text ("" when absent).
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts the status and returns the body.
    fn expect(self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {}", self.body);
        self.body
    }
}

impl Env {
    async fn start(tweak: impl FnOnce(&mut SandboxConfig)) -> Env {
        let key = TestKey::rsa2048("fhir-api-key");
        let scopes = ScopeSet::parse("system/*.read system/*.write").expect("scopes");
        let clients = vec![
            client(APP, &[&key]).with_scopes(scopes.clone()),
            client(OTHER_APP, &[&key]).with_scopes(scopes),
        ];
        let sandbox = sandbox_with(clients, tweak).await;
        Env {
            sandbox,
            key,
            // Every request asks for FHIR JSON unless a test says otherwise, as a FHIR client
            // does (Epic answers XML, and the sandbox 406, to requests that do not).
            http: reqwest::Client::builder()
                .default_headers(
                    [(
                        reqwest::header::ACCEPT,
                        reqwest::header::HeaderValue::from_static(FHIR_JSON),
                    )]
                    .into_iter()
                    .collect(),
                )
                .build()
                .expect("client"),
        }
    }

    /// A token of [`APP`] carrying exactly `scope`.
    async fn token(&self, scope: &str) -> String {
        token_for(&self.sandbox, APP, &self.key, Some(scope)).await
    }

    /// A read token of [`OTHER_APP`].
    async fn other_client_token(&self) -> String {
        token_for(&self.sandbox, OTHER_APP, &self.key, Some(READ_ALL)).await
    }

    /// An absolute URL under the FHIR base with properly encoded query pairs.
    fn url(&self, path: &str, pairs: &[(&str, &str)]) -> String {
        let mut url =
            Url::parse(&format!("{}/{path}", self.sandbox.base_url())).expect("valid URL");
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url.into()
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("sandbox reachable");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("complete body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }

    /// GETs an absolute URL, asking for FHIR JSON.
    async fn get(&self, token: Option<&str>, url: &str) -> Reply {
        self.get_accepting(token, url, FHIR_JSON).await
    }

    async fn get_accepting(&self, token: Option<&str>, url: &str, accept: &str) -> Reply {
        let mut request = self.http.get(url).header("Accept", accept);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn search(&self, token: &str, resource_type: &str, pairs: &[(&str, &str)]) -> Reply {
        self.get(Some(token), &self.url(resource_type, pairs)).await
    }

    /// A search that must succeed: returns the searchset Bundle.
    async fn bundle(&self, token: &str, resource_type: &str, pairs: &[(&str, &str)]) -> Value {
        let reply = self.search(token, resource_type, pairs).await;
        assert_eq!(
            reply.header("content-type"),
            "application/fhir+json; charset=utf-8"
        );
        let bundle = reply.expect(200, &format!("{resource_type}?{pairs:?}"));
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "searchset");
        bundle
    }

    /// Follows `next` links verbatim from `first` until none is left; returns every page.
    async fn pages(&self, token: &str, first: Value) -> Vec<Value> {
        let mut pages = vec![first];
        while let Some(next) = pages.last().and_then(next_link) {
            assert!(
                next.starts_with(self.sandbox.base_url().as_str()),
                "next link {next} leaves the FHIR base"
            );
            assert!(pages.len() < 100, "paging does not end");
            let page = self.get(Some(token), &next).await.expect(200, &next);
            pages.push(page);
        }
        pages
    }

    /// Every match id of a search, following its next links.
    async fn all_match_ids(
        &self,
        token: &str,
        resource_type: &str,
        pairs: &[(&str, &str)],
    ) -> Vec<String> {
        let first = self.bundle(token, resource_type, pairs).await;
        self.pages(token, first)
            .await
            .iter()
            .flat_map(match_ids)
            .collect()
    }

    /// Stores `resource` directly (as a loader would), bypassing the API.
    fn put_in_store(&self, resource: Value) {
        self.sandbox.store().upsert(resource).expect("stored");
    }
}

/// The resources of the entries of `bundle` whose `search.mode` is `mode`.
fn entries<'a>(bundle: &'a Value, mode: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|entry| entry["search"]["mode"] == mode)
                .map(|entry| &entry["resource"])
                .collect()
        })
        .unwrap_or_default()
}

/// The ids of the match entries of `bundle`, in order.
fn match_ids(bundle: &Value) -> Vec<String> {
    entries(bundle, "match")
        .iter()
        .map(|resource| resource["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `Type/id` of each resource.
fn references(resources: &[&Value]) -> Vec<String> {
    resources
        .iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap_or_default(),
                r["id"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"].as_array().and_then(|links| {
        links
            .iter()
            .find(|link| link["relation"] == relation)
            .and_then(|link| link["url"].as_str())
            .map(str::to_owned)
    })
}

fn next_link(bundle: &Value) -> Option<String> {
    link(bundle, "next")
}

fn total(bundle: &Value) -> u64 {
    bundle["total"].as_u64().expect("Bundle.total")
}

/// The issues of the bundle's `search.mode = outcome` entries.
fn outcome_issues(bundle: &Value) -> Vec<Value> {
    entries(bundle, "outcome")
        .into_iter()
        .flat_map(|outcome| {
            assert_eq!(outcome["resourceType"], "OperationOutcome");
            outcome["issue"].as_array().cloned().unwrap_or_default()
        })
        .collect()
}

/// The Epic code of an issue (`details.coding` in Epic's system), if any.
fn epic_code(issue: &Value) -> Option<String> {
    issue["details"]["coding"].as_array().and_then(|codings| {
        codings
            .iter()
            .find(|coding| coding["system"] == EPIC_OUTCOME_SYSTEM)
            .and_then(|coding| coding["code"].as_str())
            .map(str::to_owned)
    })
}

fn expression(issue: &Value) -> Vec<String> {
    issue["expression"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts an error answered as an OperationOutcome with `status` and issue `code`; returns
/// the issue.
/// The issue of an Epic "required parameter" refusal: 400, fatal, code `required`.
fn required_issue(reply: &Reply) -> Value {
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        reply.body["resourceType"], "OperationOutcome",
        "{}",
        reply.body
    );
    let issue = reply.body["issue"][0].clone();
    assert_eq!(issue["severity"], "fatal", "{issue}");
    assert_eq!(issue["code"], "required", "{issue}");
    issue
}

fn error_issue(reply: &Reply, status: u16, code: &str) -> Value {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert!(
        reply.header("content-type").starts_with(FHIR_JSON),
        "errors are FHIR JSON too: {}",
        reply.header("content-type")
    );
    assert_eq!(
        reply.body["resourceType"], "OperationOutcome",
        "{}",
        reply.body
    );
    let issue = reply.body["issue"][0].clone();
    assert_eq!(issue["severity"], "error", "{issue}");
    assert_eq!(issue["code"], code, "{issue}");
    assert!(
        issue["diagnostics"].as_str().is_some_and(|d| !d.is_empty()),
        "an error says what went wrong: {issue}"
    );
    issue
}

/// A category CodeableConcept of the FHIR observation-category system.
fn category(code: &str) -> Value {
    json!([{"coding": [{"system": CATEGORY_SYSTEM, "code": code}]}])
}

/// A minimal vital-signs Observation of `patient` with the given extra elements.
fn observation(id: &str, patient: &str, extra: Value) -> Value {
    let mut resource = json!({
        "resourceType": "Observation",
        "id": id,
        "status": "final",
        "category": category("vital-signs"),
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{patient}")},
    });
    if let (Some(resource), Some(extra)) = (resource.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            resource.insert(key.clone(), value.clone());
        }
    }
    resource
}

/// Whether a stored Observation is in the vital-signs category.
fn is_vital_sign(json: &Value) -> bool {
    json["category"].as_array().is_some_and(|categories| {
        categories.iter().any(|c| {
            c["coding"]
                .as_array()
                .is_some_and(|codings| codings.iter().any(|coding| coding["code"] == "vital-signs"))
        })
    })
}

/// Derrick Lin's vital signs as the store holds them, in creation order.
fn derrick_vitals(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .store()
        .patient_resources("Observation", DERRICK)
        .iter()
        .filter(|r| is_vital_sign(&serde_json::from_slice(r.json()).expect("stored JSON")))
        .map(|r| r.id().to_owned())
        .collect()
}

fn as_set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

/// Asserts that `ids` holds no id twice.
fn assert_no_repeats(ids: &[String], what: &str) {
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{what}: a match is repeated");
}

/// A GET written by hand on a raw connection, for requests `reqwest` cannot make (it always
/// sends an `Accept` header). Returns the status and the body.
async fn raw_get(
    sandbox: &Sandbox,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(sandbox.addr())
        .await
        .expect("connects");
    let mut request = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        sandbox.addr()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .await
        .expect("response read");
    let text = String::from_utf8(response).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase().contains("content-length:"),
        "a body with a length, not chunked: {head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let parsed = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_owned()));
    (status, parsed)
}

// ---------------------------------------------------------------------------------------------
// Paths, discovery and the CapabilityStatement
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn smart_configuration_is_json_whatever_the_accept() {
    let env = Env::start(|_| {}).await;
    let url = env.url(".well-known/smart-configuration", &[]);
    assert!(
        url.ends_with("/interconnect-fhir-oauth/api/FHIR/R4/.well-known/smart-configuration"),
        "{url}"
    );
    for accept in [
        FHIR_JSON,
        "application/json",
        "application/fhir+xml",
        "text/html",
        "*/*",
    ] {
        let reply = env.get_accepting(None, &url, accept).await;
        assert!(
            reply.header("content-type").starts_with("application/json"),
            "{accept}: {}",
            reply.header("content-type")
        );
        let config = reply.expect(200, accept);
        assert_eq!(config["token_endpoint"], env.sandbox.token_url().as_str());
        assert!(
            config["token_endpoint_auth_methods_supported"]
                .as_array()
                .expect("methods")
                .contains(&json!("private_key_jwt"))
        );
    }
    let path = format!(
        "{}/.well-known/smart-configuration",
        env.sandbox.base_url().path()
    );
    let (status, config) = raw_get(&env.sandbox, &path, &[]).await;
    assert_eq!(status, 200, "no Accept at all: {config}");
    assert_eq!(config["token_endpoint"], env.sandbox.token_url().as_str());
}

/// A value every parameter of a kind accepts, for the CapabilityStatement walk.
fn sample_value(kind: &str, name: &str) -> &'static str {
    match kind {
        "date" => "ge1900-01-01",
        "token" => "x",
        "reference" => "x",
        "string" => "a",
        "quantity" => "gt0",
        other => panic!("search parameter {name} has type {other}, which this test cannot sample"),
    }
}

/// Parameters that satisfy Epic's required-parameter rules, so a search exercises the
/// parameter under test rather than answering 4111/4110.
fn epic_companions(resource_type: &str) -> Vec<(&'static str, &'static str)> {
    match resource_type {
        "Observation" => vec![("category", "vital-signs")],
        "Patient" => vec![("_id", DERRICK)],
        "EpisodeOfCare" => vec![("patient", JASON), ("type", "diab")],
        "Specimen" => vec![("_id", "any")],
        _ => Vec::new(),
    }
}

/// Runs one search that must be answered 200 without ignoring any parameter.
async fn assert_parameter_works(
    env: &Env,
    token: &str,
    resource_type: &str,
    name: &str,
    value: &str,
) {
    let mut pairs: Vec<(&str, &str)> = epic_companions(resource_type);
    pairs.push((name, value));
    let reply = env.search(token, resource_type, &pairs).await;
    let bundle = reply.expect(200, &format!("{resource_type}?{name}={value}"));
    let ignored: Vec<Value> = outcome_issues(&bundle)
        .into_iter()
        .filter(|issue| epic_code(issue).as_deref() == Some(&EPIC_PARAMETER_IGNORED.to_string()))
        .collect();
    assert!(
        ignored.is_empty(),
        "{resource_type}?{name}={value} was listed but ignored: {ignored:?}"
    );
}

#[tokio::test]
async fn capability_statement_lists_every_type_and_every_listed_parameter_works() {
    let env = Env::start(|_| {}).await;
    let url = env.url("metadata", &[]);
    assert!(url.ends_with("/interconnect-fhir-oauth/api/FHIR/R4/metadata"));
    // Metadata needs no token, as on Epic.
    let statement = env.get(None, &url).await.expect(200, "metadata");
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["kind"], "instance");
    // Epic's identity, by which Epic-aware tools recognise Epic; the sandbox says what it is
    // where no tool looks for a vendor.
    assert_eq!(statement["software"]["name"], "Epic");
    assert!(
        statement["software"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );
    assert_eq!(statement["publisher"], "Epic");
    assert!(
        statement["implementation"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("sandbox")),
        "{}",
        statement["implementation"]
    );
    // Epic does not search by `_lastUpdated`: it is declared nowhere.
    assert!(
        !statement.to_string().contains("\"_lastUpdated\""),
        "_lastUpdated is declared"
    );
    for resource_type in [
        "EpisodeOfCare",
        "DocumentReference",
        "Binary",
        "DiagnosticReport",
        "ServiceRequest",
        "Specimen",
        "Device",
        "Location",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Medication",
        "MedicationDispense",
    ] {
        assert!(
            statement["rest"][0]["resource"]
                .as_array()
                .expect("resources")
                .iter()
                .any(|r| r["type"] == resource_type),
            "{resource_type} is listed"
        );
    }
    let rest = &statement["rest"][0];
    let listed: BTreeMap<String, &Value> = rest["resource"]
        .as_array()
        .expect("rest.resource")
        .iter()
        .map(|r| (r["type"].as_str().expect("type").to_owned(), r))
        .collect();
    for held in env.sandbox.store().types() {
        assert!(listed.contains_key(&held), "{held} is held but not listed");
    }

    let token = env.token(READ_ALL).await;
    let mut queries = 0;
    for (resource_type, resource) in &listed {
        let params = resource["searchParam"].as_array().expect("searchParam");
        assert!(
            params.iter().any(|p| p["name"] == "_id"),
            "{resource_type} lists _id"
        );
        for param in params {
            let name = param["name"].as_str().expect("name");
            let kind = param["type"].as_str().expect("type");
            assert_parameter_works(&env, &token, resource_type, name, sample_value(kind, name))
                .await;
            queries += 1;
        }
        for include in resource["searchInclude"].as_array().into_iter().flatten() {
            let include = include.as_str().expect("include");
            assert_parameter_works(&env, &token, resource_type, "_include", include).await;
            queries += 1;
        }
    }
    for param in rest["searchParam"].as_array().expect("rest.searchParam") {
        let name = param["name"].as_str().expect("name");
        let value = match name {
            "_count" => "5",
            "_sort" => "-_id",
            "_elements" => "id,code",
            "_summary" => "true",
            "_total" => "accurate",
            other => panic!("rest-level parameter {other} has no sample in this test"),
        };
        assert_parameter_works(&env, &token, "Condition", name, value).await;
        queries += 1;
    }
    assert!(queries > 100, "only {queries} parameters were listed");
}

// ---------------------------------------------------------------------------------------------
// Read, vread, create, update
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn read_and_vread_carry_versions_and_unknowns_are_404() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;

    let reply = env
        .get(Some(&token), &env.url(&format!("Patient/{DERRICK}"), &[]))
        .await;
    assert_eq!(
        reply.header("content-type"),
        "application/fhir+json; charset=utf-8"
    );
    assert_eq!(reply.header("etag"), "W/\"1\"");
    let last_modified = httpdate::parse_http_date(reply.header("last-modified"))
        .expect("Last-Modified is an HTTP date");
    let patient = reply.expect(200, "read");
    assert_eq!(patient["resourceType"], "Patient");
    assert_eq!(patient["id"], DERRICK);
    assert_eq!(patient["meta"]["versionId"], "1");
    let last_updated = time::OffsetDateTime::parse(
        patient["meta"]["lastUpdated"]
            .as_str()
            .expect("lastUpdated"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("RFC 3339 lastUpdated");
    let modified_secs = last_modified
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert_eq!(
        i64::try_from(modified_secs).expect("fits"),
        last_updated.unix_timestamp(),
        "Last-Modified is meta.lastUpdated to the second"
    );

    let reply = env
        .get(
            Some(&token),
            &env.url(&format!("Patient/{DERRICK}/_history/1"), &[]),
        )
        .await;
    assert_eq!(reply.header("etag"), "W/\"1\"");
    assert_eq!(reply.expect(200, "vread"), patient);

    let reply = env
        .get(
            Some(&token),
            &env.url(&format!("Patient/{DERRICK}/_history/2"), &[]),
        )
        .await;
    error_issue(&reply, 404, "not-found");
    let reply = env
        .get(
            Some(&token),
            &env.url(&format!("Patient/{DERRICK}/_history/first"), &[]),
        )
        .await;
    let issue = error_issue(&reply, 400, "invalid");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("first")
    );

    let reply = env
        .get(Some(&token), &env.url("Patient/no-such-patient", &[]))
        .await;
    let issue = error_issue(&reply, 404, "not-found");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("Patient/no-such-patient"),
        "{issue}"
    );

    // Unknown resource types: a well-formed name the server does not know, and a malformed one,
    // for read and for search.
    for path in ["Spaceship/1", "patient/1", "Spaceship/1/_history/1"] {
        let reply = env.get(Some(&token), &env.url(path, &[])).await;
        error_issue(&reply, 404, "not-found");
    }
    for resource_type in ["Spaceship", "patient"] {
        let reply = env.search(&token, resource_type, &[("_id", "1")]).await;
        let issue = error_issue(&reply, 404, "not-found");
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .contains(resource_type),
            "{issue}"
        );
    }
    // Paths that are no FHIR interaction at all.
    let reply = env
        .get(Some(&token), &env.url("Patient/a/b/c/d", &[]))
        .await;
    error_issue(&reply, 404, "not-found");
}

#[tokio::test]
async fn create_and_update_need_write_scopes_and_honour_if_match() {
    let env = Env::start(|config| config.scope_grant = Some(ScopeGrant::Requested)).await;
    let reader = env.token(READ_ALL).await;
    let writer = env.token("system/*.read system/Patient.write").await;
    let new_patient = json!({
        "resourceType": "Patient",
        "id": "chosen-by-client",
        "name": [{"family": "Conformance", "given": ["Casey"]}],
        "birthDate": "1990-02-03",
    });

    // Without a write scope: 403 with the scope that was missing.
    let reply = env
        .send(
            env.http
                .post(env.url("Patient", &[]))
                .bearer_auth(&reader)
                .json(&new_patient),
        )
        .await;
    error_issue(&reply, 403, "forbidden");
    assert!(
        reply
            .header("www-authenticate")
            .contains("insufficient_scope")
    );
    let reply = env
        .send(
            env.http
                .put(env.url(&format!("Patient/{DERRICK}"), &[]))
                .bearer_auth(&reader)
                .json(&json!({"resourceType": "Patient", "id": DERRICK})),
        )
        .await;
    error_issue(&reply, 403, "forbidden");
    // A write scope on another type does not help.
    let reply = env
        .send(
            env.http
                .post(env.url("Observation", &[]))
                .bearer_auth(&writer)
                .json(&observation("ignored", DERRICK, json!({}))),
        )
        .await;
    error_issue(&reply, 403, "forbidden");
    assert!(
        reply.header("www-authenticate").contains("Observation"),
        "{}",
        reply.header("www-authenticate")
    );

    // Create: 201, a server-assigned id, Location of the version, ETag.
    let reply = env
        .send(
            env.http
                .post(env.url("Patient", &[]))
                .bearer_auth(&writer)
                .json(&new_patient),
        )
        .await;
    assert_eq!(reply.header("etag"), "W/\"1\"");
    let location = reply.header("location").to_owned();
    let created = reply.expect(201, "create");
    let id = created["id"].as_str().expect("assigned id").to_owned();
    assert_ne!(id, "chosen-by-client", "create ignores the body's id");
    assert_eq!(
        location,
        format!("{}/Patient/{id}/_history/1", env.sandbox.base_url())
    );
    assert_eq!(created["name"][0]["family"], "Conformance");
    let fetched = env
        .get(Some(&reader), &location)
        .await
        .expect(200, "Location");
    assert_eq!(fetched, created);
    let found = env
        .bundle(&reader, "Patient", &[("_id", id.as_str())])
        .await;
    assert_eq!(
        match_ids(&found),
        vec![id.clone()],
        "created resources are searchable"
    );

    // Update with the right If-Match: 200, version 2.
    let mut changed = created.clone();
    changed["name"][0]["family"] = json!("Changed");
    let url = env.url(&format!("Patient/{id}"), &[]);
    let reply = env
        .send(
            env.http
                .put(&url)
                .bearer_auth(&writer)
                .header("If-Match", "W/\"1\"")
                .json(&changed),
        )
        .await;
    assert_eq!(reply.header("etag"), "W/\"2\"");
    assert_eq!(
        reply.header("location"),
        format!("{}/Patient/{id}/_history/2", env.sandbox.base_url())
    );
    let updated = reply.expect(200, "update");
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["name"][0]["family"], "Changed");

    // A stale If-Match: 412, nothing written.
    let reply = env
        .send(
            env.http
                .put(&url)
                .bearer_auth(&writer)
                .header("If-Match", "W/\"1\"")
                .json(&created),
        )
        .await;
    let issue = error_issue(&reply, 412, "conflict");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("version")
    );
    let current = env.get(Some(&reader), &url).await;
    assert_eq!(current.header("etag"), "W/\"2\"");
    assert_eq!(current.body["name"][0]["family"], "Changed");
    // The first version is still readable.
    let first = env
        .get(Some(&reader), &format!("{url}/_history/1"))
        .await
        .expect(200, "vread 1");
    assert_eq!(first["name"][0]["family"], "Conformance");

    // A malformed If-Match is a 400 naming the header.
    let reply = env
        .send(
            env.http
                .put(&url)
                .bearer_auth(&writer)
                .header("If-Match", "banana")
                .json(&changed),
        )
        .await;
    let issue = error_issue(&reply, 400, "invalid");
    assert_eq!(expression(&issue), vec!["If-Match"]);

    // `_format` applies to writes too: XML is refused before anything is written.
    let patients = env.sandbox.store().count("Patient");
    let reply = env
        .send(
            env.http
                .post(env.url("Patient", &[("_format", "xml")]))
                .bearer_auth(&writer)
                .json(&new_patient),
        )
        .await;
    // The refusal itself is written in XML, which the request asked for.
    assert_xml_outcome(&reply, 406, "JSON");
    let reply = env
        .send(
            env.http
                .put(env.url("Patient/format-check", &[("_format", "xml")]))
                .bearer_auth(&writer)
                .json(&json!({"resourceType": "Patient", "id": "format-check"})),
        )
        .await;
    assert_xml_outcome(&reply, 406, "JSON");
    assert_eq!(env.sandbox.store().count("Patient"), patients);

    // PUT to a new client-chosen id creates it.
    let reply = env
        .send(
            env.http
                .put(env.url("Patient/client-chosen-1", &[]))
                .bearer_auth(&writer)
                .json(&json!({"resourceType": "Patient", "id": "client-chosen-1", "name": [{"family": "Chosen"}]})),
        )
        .await;
    assert_eq!(reply.header("etag"), "W/\"1\"");
    reply.expect(201, "PUT create");

    // Bodies that do not fit the request.
    for (body, needle) in [
        (
            json!({"resourceType": "Patient", "id": "other-id"}),
            "other-id",
        ),
        (
            json!({"resourceType": "Observation", "id": id}),
            "Observation",
        ),
    ] {
        let reply = env
            .send(env.http.put(&url).bearer_auth(&writer).json(&body))
            .await;
        let issue = error_issue(&reply, 400, "invalid");
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{issue}"
        );
    }
    let reply = env
        .send(
            env.http
                .post(env.url("Patient", &[]))
                .bearer_auth(&writer)
                .header("Content-Type", FHIR_JSON)
                .body("{not json"),
        )
        .await;
    let issue = error_issue(&reply, 400, "invalid");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("JSON")
    );
}

// ---------------------------------------------------------------------------------------------
// Epic behaviours
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn epic_required_search_parameters() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;

    // Observation needs category or code: 4111 naming the parameter, a fatal issue of code
    // `required`, as Epic answers.
    let reply = env
        .search(&token, "Observation", &[("patient", DERRICK)])
        .await;
    let issue = required_issue(&reply);
    assert_eq!(
        epic_code(&issue).as_deref(),
        Some(EPIC_REQUIRED_PARAMETER),
        "{issue}"
    );
    assert_eq!(expression(&issue), vec!["category"]);
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("category"),
        "{issue}"
    );
    for extra in [("category", "vital-signs"), ("code", "8867-4")] {
        let bundle = env
            .bundle(&token, "Observation", &[("patient", DERRICK), extra])
            .await;
        assert!(total(&bundle) > 0, "{extra:?}");
    }

    // Patient search needs _id, an identifier or demographics: 4110 without any parameter,
    // 4111 with parameters that identify no one.
    for (pairs, code) in [
        (&[][..], EPIC_NO_PARAMETERS),
        (&[("gender", "male")][..], EPIC_REQUIRED_PARAMETER),
        (&[("address-city", "Verona")][..], EPIC_REQUIRED_PARAMETER),
    ] {
        let reply = env.search(&token, "Patient", pairs).await;
        let issue = required_issue(&reply);
        assert_eq!(
            epic_code(&issue).as_deref(),
            Some(code),
            "{pairs:?}: {issue}"
        );
    }

    // EpisodeOfCare needs patient and type; Specimen is searched by _id only.
    let reply = env
        .search(&token, "EpisodeOfCare", &[("patient", JASON)])
        .await;
    assert_eq!(expression(&required_issue(&reply)), vec!["type"]);
    let reply = env.search(&token, "Specimen", &[("patient", JASON)]).await;
    assert_eq!(expression(&required_issue(&reply)), vec!["_id"]);
    let identifier = format!("{MRN_SYSTEM}|E4005");
    for pairs in [
        &[("_id", DERRICK)][..],
        &[("identifier", identifier.as_str())][..],
        &[("family", "Lin"), ("given", "Derrick")][..],
        &[("birthdate", "1973-06-03")][..],
    ] {
        let bundle = env.bundle(&token, "Patient", pairs).await;
        assert_eq!(match_ids(&bundle), vec![DERRICK], "{pairs:?}");
    }

    // Condition, Encounter and MedicationRequest accept patient alone, and find exactly the
    // patient's resources.
    for resource_type in ["Condition", "Encounter", "MedicationRequest"] {
        let expected: BTreeSet<String> = env
            .sandbox
            .store()
            .patient_resources(resource_type, JASON)
            .iter()
            .map(|r| r.id().to_owned())
            .collect();
        assert!(!expected.is_empty(), "Jason has {resource_type}s");
        let ids = env
            .all_match_ids(&token, resource_type, &[("patient", JASON)])
            .await;
        assert_eq!(as_set(&ids), expected, "{resource_type}");
        assert_no_repeats(&ids, resource_type);
    }
}

#[tokio::test]
async fn epic_warning_entries_for_no_results_and_ignored_parameters() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;

    // Zero results: total 0 and a 4101 warning entry.
    let bundle = env
        .bundle(&token, "Condition", &[("patient", "no-such-patient")])
        .await;
    assert_eq!(total(&bundle), 0);
    assert!(match_ids(&bundle).is_empty());
    let issues = outcome_issues(&bundle);
    assert_eq!(issues.len(), 1, "{bundle}");
    assert_eq!(issues[0]["severity"], "warning");
    assert_eq!(epic_code(&issues[0]), Some(EPIC_NO_RESULTS.to_string()));
    let outcome_entry = &bundle["entry"][0];
    assert_eq!(outcome_entry["search"]["mode"], "outcome");

    // An unknown parameter is ignored with a 4122 warning naming it; results are unchanged.
    let plain = env.bundle(&token, "Condition", &[("patient", JASON)]).await;
    let with_unknown = env
        .bundle(
            &token,
            "Condition",
            &[("patient", JASON), ("colour", "blue")],
        )
        .await;
    assert!(!match_ids(&plain).is_empty());
    assert_eq!(match_ids(&with_unknown), match_ids(&plain));
    assert_eq!(total(&with_unknown), total(&plain));
    assert_eq!(
        total(&with_unknown),
        match_ids(&with_unknown).len() as u64,
        "the outcome entry is not counted"
    );
    assert!(outcome_issues(&plain).is_empty(), "{plain}");
    let issues = outcome_issues(&with_unknown);
    assert_eq!(issues.len(), 1, "{with_unknown}");
    assert_eq!(issues[0]["severity"], "warning");
    assert_eq!(
        epic_code(&issues[0]),
        Some(EPIC_PARAMETER_IGNORED.to_string())
    );
    assert_eq!(expression(&issues[0]), vec!["colour"]);
    assert!(
        issues[0]["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("colour"),
        "{}",
        issues[0]
    );

    // Both at once: one outcome entry holding both warnings.
    let bundle = env
        .bundle(
            &token,
            "Condition",
            &[("patient", "no-such-patient"), ("colour", "blue")],
        )
        .await;
    let codes: Vec<Option<String>> = outcome_issues(&bundle).iter().map(epic_code).collect();
    assert_eq!(
        codes,
        vec![
            Some(EPIC_PARAMETER_IGNORED.to_string()),
            Some(EPIC_NO_RESULTS.to_string())
        ]
    );
    assert_eq!(entries(&bundle, "outcome").len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn paging_returns_every_match_once_in_pages_of_at_most_1000() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let expected = derrick_vitals(&env.sandbox);
    assert!(
        expected.len() > 2 * MAX_PAGE_SIZE,
        "{} vitals",
        expected.len()
    );
    let query = [("patient", DERRICK), ("category", "vital-signs")];

    let first = env.bundle(&token, "Observation", &query).await;
    assert_eq!(
        link(&first, "self").as_deref(),
        Some(env.url("Observation", &query).as_str()),
        "the self link is the request's absolute URL"
    );
    let next = next_link(&first).expect("a next link");
    let next_url = Url::parse(&next).expect("absolute next link");
    assert_eq!(
        next_url.origin(),
        env.sandbox.base_url().origin(),
        "next stays on the server"
    );
    assert_eq!(
        next_url.path(),
        format!("{}/Observation", env.sandbox.base_url().path())
    );
    assert!(
        next_url
            .query_pairs()
            .any(|(k, v)| k == "sessionID" && !v.is_empty()),
        "{next}"
    );

    let pages = env.pages(&token, first).await;
    assert_eq!(pages.len(), expected.len().div_ceil(MAX_PAGE_SIZE));
    for (number, page) in pages.iter().enumerate() {
        let matches = match_ids(page).len();
        assert!(
            matches <= MAX_PAGE_SIZE && matches > 0,
            "page {number}: {matches}"
        );
        assert_eq!(total(page), expected.len() as u64, "page {number}");
        if number > 0 {
            assert_eq!(
                link(page, "self"),
                next_link(&pages[number - 1]),
                "page {number}'s self link is the next link that fetched it"
            );
        }
    }
    let ids: Vec<String> = pages.iter().flat_map(match_ids).collect();
    assert_no_repeats(&ids, "paging");
    // Without _sort the order is creation order: exactly the store's order.
    assert_eq!(ids, expected);
    assert!(env.sandbox.stats().live_sessions >= 1);
}

#[tokio::test]
async fn count_is_respected_and_capped_at_1000() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let expected = derrick_vitals(&env.sandbox);

    let first = env
        .bundle(
            &token,
            "Observation",
            &[
                ("patient", DERRICK),
                ("category", "vital-signs"),
                ("_count", "400"),
            ],
        )
        .await;
    let pages = env.pages(&token, first).await;
    assert_eq!(pages.len(), expected.len().div_ceil(400));
    let sizes: Vec<usize> = pages.iter().map(|p| match_ids(p).len()).collect();
    for size in &sizes[..sizes.len() - 1] {
        assert_eq!(*size, 400, "{sizes:?}");
    }
    let ids: Vec<String> = pages.iter().flat_map(match_ids).collect();
    assert_no_repeats(&ids, "_count=400");
    assert_eq!(ids, expected);

    let capped = env
        .bundle(
            &token,
            "Observation",
            &[
                ("patient", DERRICK),
                ("category", "vital-signs"),
                ("_count", "5000"),
            ],
        )
        .await;
    assert_eq!(match_ids(&capped).len(), MAX_PAGE_SIZE);
    assert!(next_link(&capped).is_some());

    let small = env
        .bundle(&token, "Condition", &[("patient", JASON), ("_count", "3")])
        .await;
    assert_eq!(match_ids(&small).len(), 3);
    let condition_count = env
        .sandbox
        .store()
        .patient_resources("Condition", JASON)
        .len();
    assert_eq!(total(&small), condition_count as u64);
    let ids: Vec<String> = env
        .pages(&token, small)
        .await
        .iter()
        .flat_map(match_ids)
        .collect();
    assert_eq!(ids.len(), condition_count);
    assert_no_repeats(&ids, "_count=3");
}

#[tokio::test]
async fn next_links_are_safe_to_retry_and_pages_are_a_snapshot() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let writer = env.token("system/*.read system/Observation.write").await;
    let expected = derrick_vitals(&env.sandbox);
    let query = [("patient", DERRICK), ("category", "vital-signs")];

    let first = env.bundle(&token, "Observation", &query).await;
    let second_link = next_link(&first).expect("next");
    let second = env
        .get(Some(&token), &second_link)
        .await
        .expect(200, "page 2");
    let third_link = next_link(&second).expect("next of page 2");
    let third = env
        .get(Some(&token), &third_link)
        .await
        .expect(200, "page 3");
    // The same link again gives the same page, also after a later page was fetched.
    let again = env
        .get(Some(&token), &second_link)
        .await
        .expect(200, "page 2 again");
    assert_eq!(again, second);

    // Change the data after the first pages: update a match of a later page through the store
    // and another through the API, and create a new match through the API.
    let last_page_start = 3 * MAX_PAGE_SIZE;
    assert!(expected.len() > last_page_start + 1);
    let via_store = expected[last_page_start].clone();
    let via_api = expected[last_page_start + 1].clone();
    let stored = env
        .sandbox
        .store()
        .read("Observation", &via_store)
        .expect("stored");
    let mut changed: Value = serde_json::from_slice(stored.json()).expect("JSON");
    changed["status"] = json!("amended");
    env.put_in_store(changed);
    let mut changed = env
        .get(
            Some(&token),
            &env.url(&format!("Observation/{via_api}"), &[]),
        )
        .await
        .expect(200, "read");
    changed["status"] = json!("corrected");
    env.send(
        env.http
            .put(env.url(&format!("Observation/{via_api}"), &[]))
            .bearer_auth(&writer)
            .json(&changed),
    )
    .await
    .expect(200, "update through the API");
    let created = env
        .send(
            env.http
                .post(env.url("Observation", &[]))
                .bearer_auth(&writer)
                .json(&observation(
                    "new",
                    DERRICK,
                    json!({"effectiveDateTime": "2026-10-31T09:00:00Z"}),
                )),
        )
        .await
        .expect(201, "create through the API");

    let mut pages = vec![first, second, third.clone()];
    pages.extend(env.pages(&token, third).await.into_iter().skip(1));
    let ids: Vec<String> = pages.iter().flat_map(match_ids).collect();
    assert_eq!(ids, expected, "the snapshot ignores later writes");
    let last = pages.last().expect("pages");
    for resource in entries(last, "match") {
        if resource["id"] == via_store.as_str() || resource["id"] == via_api.as_str() {
            assert_eq!(resource["meta"]["versionId"], "1", "{resource}");
            assert_eq!(resource["status"], "final", "{resource}");
        }
    }

    // A new search sees the writes.
    let fresh = env.all_match_ids(&token, "Observation", &query).await;
    assert_eq!(fresh.len(), expected.len() + 1);
    assert!(fresh.contains(&created["id"].as_str().expect("id").to_owned()));
}

#[tokio::test]
async fn sort_with_several_keys_is_stable_across_pages() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    // 2,345 Observations with few distinct statuses and dates, so that the keys tie often and
    // the id decides; they are stored in an order unrelated to their ids.
    const COUNT: usize = 2345;
    const STATUSES: [&str; 4] = ["final", "amended", "preliminary", "registered"];
    const DATES: [&str; 7] = [
        "2023-03-01T08:00:00Z",
        "2023-03-01T09:30:00Z",
        "2023-07-14T12:00:00Z",
        "2024-01-02T00:00:00Z",
        "2024-01-02T00:00:01Z",
        "2024-11-30T23:59:59Z",
        "2025-05-05T05:05:05Z",
    ];
    let mut expected: Vec<(&str, &str, String)> = Vec::with_capacity(COUNT);
    for k in 0..COUNT {
        let n = (k * 1009) % COUNT;
        let id = format!("sort-{n:05}");
        let status = STATUSES[n % STATUSES.len()];
        let date = DATES[(n * 31 / 4) % DATES.len()];
        env.put_in_store(observation(
            &id,
            "sort-subject",
            json!({"status": status, "effectiveDateTime": date}),
        ));
        expected.push((status, date, id));
    }
    // status ascending, date descending (all dates are UTC instants of one format, so text order
    // is time order), then id ascending.
    expected.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(a.1)).then(a.2.cmp(&b.2)));
    let expected: Vec<String> = expected.into_iter().map(|(_, _, id)| id).collect();

    for count in ["1000", "317"] {
        let ids = env
            .all_match_ids(
                &token,
                "Observation",
                &[
                    ("patient", "sort-subject"),
                    ("category", "vital-signs"),
                    ("_sort", "status,-date"),
                    ("_count", count),
                ],
            )
            .await;
        assert_no_repeats(&ids, count);
        assert_eq!(ids.len(), COUNT, "_count={count}");
        if let Some(position) = ids.iter().zip(&expected).position(|(a, b)| a != b) {
            panic!(
                "_count={count}: order differs at {position}: {} instead of {}",
                ids[position], expected[position]
            );
        }
    }
}

#[tokio::test]
async fn idle_sessions_expire_with_epic_4113() {
    let env = Env::start(|c| c.session_idle_timeout = Duration::from_millis(2000)).await;
    let token = env.token(READ_ALL).await;
    let first = env
        .bundle(
            &token,
            "Observation",
            &[("patient", DERRICK), ("category", "vital-signs")],
        )
        .await;
    let page2 = next_link(&first).expect("next");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = env
        .get(Some(&token), &page2)
        .await
        .expect(200, "page 2 in time");
    let page3 = next_link(&second).expect("next");
    // Each use keeps the session alive: page 3 comes more than the idle timeout after the first
    // page, but less than it after page 2.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let third = env
        .get(Some(&token), &page3)
        .await
        .expect(200, "page 3 in time");
    let page4 = next_link(&third).expect("next");

    tokio::time::sleep(Duration::from_millis(2600)).await;
    for link in [page4, page2] {
        let reply = env.get(Some(&token), &link).await;
        let issue = error_issue(&reply, 400, "expired");
        assert_eq!(
            epic_code(&issue),
            Some(EPIC_SESSION_EXPIRED.to_string()),
            "{issue}"
        );
        assert_eq!(expression(&issue), vec!["sessionID"]);
    }
}

#[tokio::test]
async fn sessions_belong_to_their_client_and_bad_session_ids_are_refused() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let other = env.other_client_token().await;
    let first = env
        .bundle(
            &token,
            "Observation",
            &[("patient", DERRICK), ("category", "vital-signs")],
        )
        .await;
    let next = next_link(&first).expect("next");

    // Another client cannot follow the link; it is told nothing about the session.
    let reply = env.get(Some(&other), &next).await;
    let issue = error_issue(&reply, 400, "expired");
    assert_eq!(expression(&issue), vec!["sessionID"]);
    // Nor can a request without a token.
    let reply = env.get(None, &next).await;
    assert_eq!(reply.status, 401);
    // The owner still can.
    let second = env.get(Some(&token), &next).await.expect(200, "owner");
    assert_eq!(match_ids(&second).len(), MAX_PAGE_SIZE);

    let session_value = Url::parse(&next)
        .expect("URL")
        .query_pairs()
        .find(|(k, _)| k == "sessionID")
        .map(|(_, v)| v.into_owned())
        .expect("sessionID");
    let (session, _) = session_value.rsplit_once('-').expect("id-page");
    let past_the_end = format!("{session}-99");
    let not_a_page = format!("{session}-two");
    for (value, code) in [
        ("garbage", "invalid"),
        ("", "invalid"),
        (not_a_page.as_str(), "invalid"),
        (past_the_end.as_str(), "invalid"),
        ("AAAAAAAAAAAAAAAAAAAAAA-1", "expired"),
    ] {
        let reply = env
            .search(&token, "Observation", &[("sessionID", value)])
            .await;
        let issue = error_issue(&reply, 400, code);
        assert_eq!(expression(&issue), vec!["sessionID"], "{value}: {issue}");
    }
    // A session of an Observation search cannot page another type.
    let reply = env
        .search(
            &token,
            "Condition",
            &[("sessionID", session_value.as_str())],
        )
        .await;
    let issue = error_issue(&reply, 400, "invalid");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap_or_default()
            .contains("Observation"),
        "{issue}"
    );
}

// ---------------------------------------------------------------------------------------------
// Includes
// ---------------------------------------------------------------------------------------------

/// The references (`Type/id`) an Observation makes through `subject` and `performer`.
fn observation_targets(resource: &Value) -> Vec<String> {
    let mut targets = Vec::new();
    if let Some(subject) = resource["subject"]["reference"].as_str() {
        targets.push(subject.to_owned());
    }
    for performer in resource["performer"].as_array().into_iter().flatten() {
        if let Some(reference) = performer["reference"].as_str() {
            targets.push(reference.to_owned());
        }
    }
    targets
}

#[tokio::test]
async fn includes_are_outside_count_and_total_and_not_repeated() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let vitals = derrick_vitals(&env.sandbox).len() as u64;
    let first = env
        .bundle(
            &token,
            "Observation",
            &[
                ("patient", DERRICK),
                ("category", "vital-signs"),
                ("_include", "Observation:patient"),
                ("_include", "Observation:performer"),
                ("_count", "10"),
            ],
        )
        .await;
    assert_eq!(total(&first), vitals, "includes are not counted in total");
    let second = env
        .get(Some(&token), &next_link(&first).expect("next"))
        .await
        .expect(200, "page 2");
    for page in [&first, &second] {
        let matches = entries(page, "match");
        assert_eq!(matches.len(), 10, "_count counts matches only");
        let included = references(&entries(page, "include"));
        assert!(
            included.contains(&format!("Patient/{DERRICK}")),
            "{included:?}"
        );
        assert_no_repeats(&included, "includes");
        // Exactly what the page's matches refer to, and nothing that is itself a match.
        let referenced: BTreeSet<String> = matches
            .iter()
            .flat_map(|m| observation_targets(m))
            .filter(|reference| {
                let (resource_type, id) = reference.split_once('/').expect("Type/id");
                env.sandbox.store().read(resource_type, id).is_some()
            })
            .collect();
        assert!(referenced.iter().any(|r| r.starts_with("Practitioner/")));
        assert_eq!(as_set(&included), referenced);
        assert_eq!(
            page["entry"].as_array().expect("entries").len(),
            10 + included.len()
        );
        for entry in page["entry"].as_array().expect("entries") {
            let resource = &entry["resource"];
            assert_eq!(
                entry["fullUrl"],
                format!(
                    "{}/{}/{}",
                    env.sandbox.base_url(),
                    resource["resourceType"].as_str().expect("type"),
                    resource["id"].as_str().expect("id")
                )
            );
        }
    }
}

#[tokio::test]
async fn revinclude_provenance_and_includes_filtered_by_scopes() {
    let env = Env::start(|config| config.scope_grant = Some(ScopeGrant::Requested)).await;
    let token = env.token(READ_ALL).await;
    let condition = env
        .sandbox
        .store()
        .patient_resources("Condition", JASON)
        .first()
        .expect("Jason has problems")
        .id()
        .to_owned();
    for (id, targets) in [
        ("prov-jason", vec![format!("Patient/{JASON}")]),
        (
            "prov-jason-problem",
            vec![format!("Patient/{JASON}"), format!("Condition/{condition}")],
        ),
        ("prov-camila", vec![format!("Patient/{CAMILA}")]),
    ] {
        let targets: Vec<Value> = targets.iter().map(|t| json!({"reference": t})).collect();
        env.put_in_store(json!({
            "resourceType": "Provenance",
            "id": id,
            "target": targets,
            "recorded": "2024-05-06T07:08:09Z",
            "agent": [{"who": {"reference": "Practitioner/somebody"}}],
        }));
    }

    let bundle = env
        .bundle(
            &token,
            "Patient",
            &[("_id", JASON), ("_revinclude", "Provenance:target")],
        )
        .await;
    assert_eq!(match_ids(&bundle), vec![JASON]);
    assert_eq!(total(&bundle), 1);
    let included = as_set(&references(&entries(&bundle, "include")));
    assert_eq!(
        included,
        as_set(&[
            "Provenance/prov-jason".to_owned(),
            "Provenance/prov-jason-problem".to_owned()
        ])
    );

    let bundle = env
        .bundle(
            &token,
            "Condition",
            &[("patient", JASON), ("_revinclude", "Provenance:target")],
        )
        .await;
    assert_eq!(
        references(&entries(&bundle, "include")),
        vec!["Provenance/prov-jason-problem"]
    );

    // Epic honours no other revinclude: ignored with a 4122 warning.
    let bundle = env
        .bundle(
            &token,
            "Patient",
            &[("_id", JASON), ("_revinclude", "Condition:patient")],
        )
        .await;
    assert!(entries(&bundle, "include").is_empty());
    let issues = outcome_issues(&bundle);
    assert_eq!(issues.len(), 1, "{bundle}");
    assert_eq!(
        epic_code(&issues[0]),
        Some(EPIC_PARAMETER_IGNORED.to_string())
    );
    assert_eq!(expression(&issues[0]), vec!["_revinclude"]);

    // Includes are limited to what the token may read.
    let query = [
        ("patient", DERRICK),
        ("category", "vital-signs"),
        ("_include", "Observation:patient"),
        ("_include", "Observation:performer"),
        ("_count", "20"),
    ];
    for (scope, allowed) in [
        ("system/Observation.read", &[][..]),
        (
            "system/Observation.read system/Patient.read",
            &["Patient"][..],
        ),
        (
            "system/Observation.read system/Patient.read system/Practitioner.read",
            &["Patient", "Practitioner"][..],
        ),
    ] {
        let scoped = env.token(scope).await;
        let bundle = env.bundle(&scoped, "Observation", &query).await;
        assert_eq!(match_ids(&bundle).len(), 20, "{scope}");
        let types: BTreeSet<String> = entries(&bundle, "include")
            .iter()
            .map(|r| r["resourceType"].as_str().expect("type").to_owned())
            .collect();
        let allowed: BTreeSet<String> = allowed.iter().map(|t| (*t).to_owned()).collect();
        assert_eq!(types, allowed, "{scope}");
    }
    let patient_only = env.token("system/Patient.read").await;
    let bundle = env
        .bundle(
            &patient_only,
            "Patient",
            &[("_id", JASON), ("_revinclude", "Provenance:target")],
        )
        .await;
    assert!(entries(&bundle, "include").is_empty(), "{bundle}");
}

// ---------------------------------------------------------------------------------------------
// Search semantics through HTTP
// ---------------------------------------------------------------------------------------------

/// One row of a search table: query pairs and the ids they must find.
type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

/// A search table row with a label saying which form it checks.
type LabelledCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

/// Runs `Observation?category=vital-signs&patient=<patient>&<pairs>` and compares the match ids
/// with `expected`, following every page.
async fn check_matches(
    env: &Env,
    token: &str,
    patient: &str,
    pairs: &[(&str, &str)],
    expected: &[&str],
) {
    let mut query = vec![("category", "vital-signs"), ("patient", patient)];
    query.extend_from_slice(pairs);
    let ids = env.all_match_ids(token, "Observation", &query).await;
    let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
    assert_eq!(as_set(&ids), expected, "{pairs:?}");
}

#[tokio::test]
async fn date_prefixes_at_day_month_and_year_precision() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let patient = "dates-subject";
    for (id, effective) in [
        (
            "jan15",
            json!({"effectiveDateTime": "2024-01-15T10:00:00Z"}),
        ),
        (
            "jan31-late",
            json!({"effectiveDateTime": "2024-01-31T23:30:00Z"}),
        ),
        (
            "feb01",
            json!({"effectiveDateTime": "2024-02-01T00:00:00Z"}),
        ),
        ("dec31-day", json!({"effectiveDateTime": "2023-12-31"})),
        (
            "period",
            json!({"effectivePeriod": {"start": "2024-01-10", "end": "2024-02-10"}}),
        ),
        (
            "open-period",
            json!({"effectivePeriod": {"start": "2024-01-20"}}),
        ),
        ("year", json!({"effectiveDateTime": "2024"})),
        // 2024-02-01T01:00:00Z: January in New York, February in UTC, the sandbox's zone.
        (
            "zoned",
            json!({"effectiveDateTime": "2024-01-31T20:00:00-05:00"}),
        ),
    ] {
        env.put_in_store(observation(id, patient, effective));
    }
    let table: &[Case<'_>] = &[
        // eq: the search range contains the value's range.
        (&[("date", "2024-01")], &["jan15", "jan31-late"]),
        (&[("date", "eq2024-01-15")], &["jan15"]),
        (
            &[("date", "2024")],
            &["jan15", "jan31-late", "feb01", "period", "year", "zoned"],
        ),
        (&[("date", "eq2024-01-31T20:00:00-05:00")], &["zoned"]),
        // ne: not eq.
        (
            &[("date", "ne2024-01")],
            &[
                "feb01",
                "dec31-day",
                "period",
                "open-period",
                "year",
                "zoned",
            ],
        ),
        // gt / lt: the value's range extends beyond the search range on that side.
        (
            &[("date", "gt2024-01-31")],
            &["feb01", "period", "open-period", "year", "zoned"],
        ),
        (&[("date", "lt2024-01")], &["dec31-day"]),
        // ge / le: gt / lt, or eq.
        (
            &[("date", "ge2024-02")],
            &["feb01", "zoned", "open-period", "year"],
        ),
        (&[("date", "le2024-01-10")], &["dec31-day", "year"]),
        // sa / eb: no overlap, after / before.
        (&[("date", "sa2024-01-31")], &["feb01", "zoned"]),
        (&[("date", "eb2024-01-15")], &["dec31-day"]),
        // Repeated parameters are AND, commas are OR.
        (
            &[("date", "ge2024-01"), ("date", "lt2024-02")],
            &["jan15", "jan31-late", "period", "open-period", "year"],
        ),
        (
            &[("date", "2024-01-15,2024-02-01")],
            &["jan15", "feb01", "zoned"],
        ),
        (&[("date", "2019")], &[]),
    ];
    for (pairs, expected) in table {
        check_matches(&env, &token, patient, pairs, expected).await;
    }
}

#[tokio::test]
async fn token_and_reference_forms_and_escapes() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let tokens = "tokens-subject";
    for (id, codings) in [
        ("t-loinc", json!([{"system": LOINC, "code": "8867-4"}])),
        ("t-local", json!([{"system": LOCAL, "code": "8867-4"}])),
        ("t-no-system", json!([{"code": "8867-4"}])),
        ("t-other", json!([{"system": LOINC, "code": "9279-1"}])),
        (
            "t-two-codings",
            json!([{"system": LOCAL, "code": "x1"}, {"system": LOINC, "code": "2708-6"}]),
        ),
        ("t-comma", json!([{"system": LOCAL, "code": "a,b"}])),
        ("t-pipe", json!([{"system": LOCAL, "code": "x|y"}])),
    ] {
        env.put_in_store(observation(
            id,
            tokens,
            json!({"code": {"coding": codings}}),
        ));
    }
    let loinc_heart_rate = format!("{LOINC}|8867-4");
    let loinc_any = format!("{LOINC}|");
    let local_x1 = format!("{LOCAL}|x1");
    let table: &[Case<'_>] = &[
        (
            &[("code", "8867-4")],
            &["t-loinc", "t-local", "t-no-system"],
        ),
        (&[("code", loinc_heart_rate.as_str())], &["t-loinc"]),
        (&[("code", "|8867-4")], &["t-no-system"]),
        (
            &[("code", loinc_any.as_str())],
            &["t-loinc", "t-other", "t-two-codings"],
        ),
        // A CodeableConcept matches on any of its codings.
        (&[("code", "2708-6")], &["t-two-codings"]),
        (&[("code", local_x1.as_str())], &["t-two-codings"]),
        (
            &[("code", "8867-4,9279-1")],
            &["t-loinc", "t-local", "t-no-system", "t-other"],
        ),
        (
            &[("code", loinc_any.as_str()), ("code", "8867-4")],
            &["t-loinc"],
        ),
        (&[("code", "a\\,b")], &["t-comma"]),
        (&[("code", "a,b")], &[]),
        (&[("code", "x\\|y")], &["t-pipe"]),
        (
            &[("code:not", "8867-4")],
            &["t-other", "t-two-codings", "t-comma", "t-pipe"],
        ),
    ];
    for (pairs, expected) in table {
        check_matches(&env, &token, tokens, pairs, expected).await;
    }

    let refs = "refs-subject";
    let elsewhere = format!("https://elsewhere.example/fhir/R4/Patient/{refs}");
    env.put_in_store(observation("r-relative", refs, json!({})));
    env.put_in_store(observation(
        "r-absolute",
        refs,
        json!({"subject": {"reference": elsewhere}}),
    ));
    env.put_in_store(observation(
        "r-group",
        refs,
        json!({"subject": {"reference": format!("Group/{refs}")}}),
    ));
    let relative = format!("Patient/{refs}");
    let here = format!("{}/Patient/{refs}", env.sandbox.base_url());
    let group = format!("Group/{refs}");
    let either = format!("Patient/{refs},Group/{refs}");
    let both_patients: &[&str] = &["r-relative", "r-absolute"];
    let table: &[LabelledCase<'_>] = &[
        ("patient=id", &[("patient", refs)], both_patients),
        (
            "patient=Patient/id",
            &[("patient", relative.as_str())],
            both_patients,
        ),
        (
            "subject=Patient/id",
            &[("subject", relative.as_str())],
            both_patients,
        ),
        (
            "subject:Patient=id",
            &[("subject:Patient", refs)],
            both_patients,
        ),
        (
            "subject=absolute URL here",
            &[("subject", here.as_str())],
            both_patients,
        ),
        (
            "subject=absolute URL elsewhere",
            &[("subject", elsewhere.as_str())],
            both_patients,
        ),
        (
            "subject=id (any type)",
            &[("subject", refs)],
            &["r-relative", "r-absolute", "r-group"],
        ),
        (
            "subject=Group/id",
            &[("subject", group.as_str())],
            &["r-group"],
        ),
        (
            "comma OR of references",
            &[("subject", either.as_str())],
            &["r-relative", "r-absolute", "r-group"],
        ),
        (
            "AND of two forms",
            &[("subject", relative.as_str()), ("subject:Patient", refs)],
            both_patients,
        ),
    ];
    for (what, pairs, expected) in table {
        let mut query = vec![("category", "vital-signs")];
        query.extend_from_slice(pairs);
        let ids = env.all_match_ids(&token, "Observation", &query).await;
        let expected: BTreeSet<String> = expected.iter().map(|id| (*id).to_owned()).collect();
        assert_eq!(as_set(&ids), expected, "{what}");
    }
}

#[tokio::test]
async fn malformed_values_and_unknown_modifiers_are_400_naming_the_parameter() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let table: &[(&str, &str)] = &[
        ("date", "2024-13-45"),
        ("date", "xx2024"),
        ("date:exact", "2024"),
        ("code:sounds-like", "x"),
        ("code", "|"),
        ("code", "a,,b"),
        ("code", ""),
        ("value-quantity", "heavy"),
        ("patient", "Group/x"),
        ("subject:Encounter", "Patient/x"),
        ("_count", "0"),
        ("_count", "ten"),
        ("_sort", "colour"),
        ("_summary", "maybe"),
        ("_total", "some"),
        ("_include", "Observation:colour"),
        ("_include", "Observation"),
    ];
    for (name, value) in table {
        let reply = env
            .search(
                &token,
                "Observation",
                &[
                    ("patient", DERRICK),
                    ("category", "vital-signs"),
                    (name, value),
                ],
            )
            .await;
        let issue = error_issue(&reply, 400, "invalid");
        assert_eq!(expression(&issue), vec![*name], "{name}={value}: {issue}");
    }
    // A duplicate control parameter names itself too.
    let reply = env
        .search(
            &token,
            "Condition",
            &[("patient", JASON), ("_count", "5"), ("_count", "6")],
        )
        .await;
    let issue = error_issue(&reply, 400, "invalid");
    assert_eq!(expression(&issue), vec!["_count"]);
}

#[tokio::test]
async fn elements_summary_and_post_search() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;

    let full = env.bundle(&token, "Condition", &[("patient", JASON)]).await;
    let subset = env
        .bundle(
            &token,
            "Condition",
            &[("patient", JASON), ("_elements", "code,clinicalStatus")],
        )
        .await;
    assert_eq!(match_ids(&subset), match_ids(&full));
    assert_eq!(total(&subset), total(&full));
    for resource in entries(&subset, "match") {
        let keys: BTreeSet<&str> = resource
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert!(
            keys.is_subset(&BTreeSet::from([
                "resourceType",
                "id",
                "meta",
                "code",
                "clinicalStatus"
            ])),
            "{keys:?}"
        );
        assert!(keys.contains("code"), "{resource}");
        let tags = resource["meta"]["tag"].as_array().expect("meta.tag");
        assert!(tags.iter().any(|t| t["code"] == "SUBSETTED"), "{resource}");
    }

    let summary = env
        .bundle(&token, "Patient", &[("_id", DERRICK), ("_summary", "true")])
        .await;
    let patient = entries(&summary, "match")[0];
    assert_eq!(patient["name"][0]["family"], "Lin");
    assert!(patient.get("communication").is_none(), "{patient}");
    assert!(
        patient["meta"]["tag"]
            .as_array()
            .is_some_and(|tags| tags.iter().any(|t| t["code"] == "SUBSETTED"))
    );

    let count = env
        .bundle(
            &token,
            "Condition",
            &[("patient", JASON), ("_summary", "count")],
        )
        .await;
    assert_eq!(total(&count), total(&full));
    assert!(entries(&count, "match").is_empty(), "{count}");
    assert!(
        count.get("entry").is_none(),
        "no empty entry array (FHIR JSON forbids empty arrays): {count}"
    );
    let count_vitals = env
        .bundle(
            &token,
            "Observation",
            &[
                ("patient", DERRICK),
                ("category", "vital-signs"),
                ("_summary", "count"),
            ],
        )
        .await;
    assert_eq!(
        total(&count_vitals),
        derrick_vitals(&env.sandbox).len() as u64
    );

    // POST _search with a form body equals GET, also when part of the query is in the URL and
    // when the results span several pages.
    let query = [
        ("patient", DERRICK),
        ("category", "vital-signs"),
        ("date", "ge2015"),
        ("_sort", "-date"),
        ("_count", "700"),
    ];
    let get_ids = env.all_match_ids(&token, "Observation", &query).await;
    assert!(get_ids.len() > 700, "several pages");
    for (in_url, in_body) in [(&query[..0], &query[..]), (&query[..1], &query[1..])] {
        let reply = env
            .send(
                env.http
                    .post(env.url("Observation/_search", in_url))
                    .bearer_auth(&token)
                    .header("Accept", FHIR_JSON)
                    .form(in_body),
            )
            .await;
        let first = reply.expect(200, "POST _search");
        assert_eq!(total(&first), get_ids.len() as u64);
        let post_ids: Vec<String> = env
            .pages(&token, first)
            .await
            .iter()
            .flat_map(match_ids)
            .collect();
        assert_eq!(post_ids, get_ids);
    }
    let reply = env
        .send(
            env.http
                .post(env.url("Observation/_search", &[]))
                .bearer_auth(&token)
                .json(&json!({"patient": DERRICK})),
        )
        .await;
    error_issue(&reply, 415, "not-supported");
}

// ---------------------------------------------------------------------------------------------
// Content negotiation: JSON only
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn json_only_content_negotiation() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let read = env.url(&format!("Patient/{DERRICK}"), &[]);
    let vread = env.url(&format!("Patient/{DERRICK}/_history/1"), &[]);
    let search = env.url("Condition", &[("patient", JASON)]);
    let metadata = env.url("metadata", &[]);

    for url in [&read, &vread, &search, &metadata] {
        for accept in [
            FHIR_JSON,
            "application/json",
            "application/json, */*;q=0.1",
            "application/fhir+json; charset=utf-8",
            "application/fhir+xml, application/fhir+json;q=0.5",
            "application/*",
        ] {
            let reply = env.get_accepting(Some(&token), url, accept).await;
            assert_eq!(
                reply.header("content-type"),
                "application/fhir+json; charset=utf-8",
                "{url} {accept}"
            );
            assert!(reply.body.is_object(), "{url} {accept}");
            assert_eq!(reply.status, 200, "{url} {accept}: {}", reply.body);
        }
        for accept in ["text/html", "application/fhir+json;q=0"] {
            let reply = env.get_accepting(Some(&token), url, accept).await;
            error_issue(&reply, 406, "not-supported");
        }
    }
    // XML: Epic answers XML to `*/*` (and to an explicit XML request); the sandbox writes its
    // CapabilityStatement and OperationOutcomes in XML, and refuses resources with a 406
    // OperationOutcome, in XML, saying to ask for JSON.
    for accept in ["*/*", "application/fhir+xml", "application/xml"] {
        let reply = env.get_accepting(Some(&token), &metadata, accept).await;
        assert_eq!(reply.status, 200, "{accept}");
        assert_eq!(
            reply.header("content-type"),
            "application/fhir+xml; charset=utf-8"
        );
        let xml = reply.body.as_str().expect("XML text");
        assert!(
            xml.contains("<CapabilityStatement xmlns=\"http://hl7.org/fhir\">"),
            "{xml}"
        );
        assert!(xml.contains("<software><name value=\"Epic\"/>"), "{xml}");
        for url in [&read, &vread, &search] {
            let reply = env.get_accepting(Some(&token), url, accept).await;
            assert_xml_outcome(&reply, 406, "application/fhir+json");
        }
    }
    // `_format` overrides Accept on every FHIR interaction.
    for url in [&read, &vread, &search, &metadata] {
        let separator = if url.contains('?') { '&' } else { '?' };
        for format in ["xml", "application/fhir+xml", "text/xml"] {
            let url = format!("{url}{separator}_format={}", format.replace('+', "%2B"));
            let reply = env.get_accepting(Some(&token), &url, FHIR_JSON).await;
            if url.contains("/metadata") {
                assert_eq!(reply.status, 200, "{url}");
                assert!(
                    reply
                        .body
                        .as_str()
                        .is_some_and(|x| x.contains("<CapabilityStatement"))
                );
            } else {
                assert_xml_outcome(&reply, 406, "JSON");
            }
        }
        for format in ["json", "application/fhir+json"] {
            let url = format!("{url}{separator}_format={}", format.replace('+', "%2B"));
            env.get_accepting(Some(&token), &url, "application/fhir+xml")
                .await
                .expect(200, &url);
        }
    }

    // No Accept header at all: XML, as Epic answers (a refusal for resources, which the
    // sandbox serves as JSON only), and errors before it are XML too.
    let authorization = format!("Bearer {token}");
    for url in [&read, &search] {
        let path_and_query = &url[env.sandbox.base_url().origin().ascii_serialization().len()..];
        let (status, body) = raw_get(
            &env.sandbox,
            path_and_query,
            &[("Authorization", &authorization)],
        )
        .await;
        assert_eq!(status, 406, "{url}: {body}");
        assert!(
            body.as_str().is_some_and(|x| x.starts_with("<?xml")),
            "{body}"
        );
        let (status, body) = raw_get(&env.sandbox, path_and_query, &[]).await;
        assert_eq!(status, 401, "{url}: {body}");
        assert!(
            body.as_str()
                .is_some_and(|x| x.contains("<OperationOutcome") && x.contains("bearer")),
            "{body}"
        );
    }
    let path = &metadata[env.sandbox.base_url().origin().ascii_serialization().len()..];
    let (status, body) = raw_get(&env.sandbox, path, &[]).await;
    assert_eq!(status, 200);
    assert!(
        body.as_str()
            .is_some_and(|x| x.contains("<CapabilityStatement")),
        "{body}"
    );

    // Without Epic's rules a missing Accept or `*/*` gets JSON.
    let generic = Env::start(|config| config.epic_rules = false).await;
    let token = generic.token(READ_ALL).await;
    let authorization = format!("Bearer {token}");
    for path in [format!("Patient/{DERRICK}"), "metadata".to_owned()] {
        let url = generic.url(&path, &[]);
        let reply = generic.get_accepting(Some(&token), &url, "*/*").await;
        assert_eq!(reply.status, 200, "{url}");
        assert!(reply.body.is_object(), "{url}");
        let path_and_query = &url[generic
            .sandbox
            .base_url()
            .origin()
            .ascii_serialization()
            .len()..];
        let (status, body) = raw_get(
            &generic.sandbox,
            path_and_query,
            &[("Authorization", &authorization)],
        )
        .await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(body["resourceType"].is_string(), "{body}");
    }
}

/// Asserts an OperationOutcome written in FHIR XML with `status`, whose text holds `needle`.
fn assert_xml_outcome(reply: &Reply, status: u16, needle: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        "application/fhir+xml; charset=utf-8"
    );
    let xml = reply.body.as_str().expect("XML text");
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<OperationOutcome xmlns=\"http://hl7.org/fhir\"><issue>"),
        "{xml}"
    );
    assert!(xml.contains(needle), "{xml} lacks {needle}");
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn faults_latency_errors_throttles_drops_and_counters() {
    let env = Env::start(|_| {}).await;
    let token = env.token(READ_ALL).await;
    let read = env.url(&format!("Patient/{DERRICK}"), &[]);
    let metadata = env.url("metadata", &[]);
    let discovery = env.url(".well-known/smart-configuration", &[]);
    let search = env.url("Condition", &[("patient", JASON)]);
    assert_eq!(env.sandbox.faults(), Faults::default());
    let before = env.sandbox.stats();

    // Latency: every FHIR response is delayed, metadata and discovery are not.
    let latency = Duration::from_millis(600);
    env.sandbox
        .set_faults(Faults {
            latency,
            ..Faults::default()
        })
        .expect("valid faults");
    let started = Instant::now();
    env.get(Some(&token), &read).await.expect(200, "slow read");
    assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    for url in [&metadata, &discovery] {
        let started = Instant::now();
        env.get(None, url).await.expect(200, url);
        assert!(started.elapsed() < latency, "{url} was delayed");
    }

    // Errors: 503 with an OperationOutcome of code transient.
    env.sandbox
        .set_faults(Faults {
            error_rate: 1.0,
            ..Faults::default()
        })
        .expect("valid faults");
    let handled = env.sandbox.stats().fhir_requests;
    for url in [&read, &search] {
        let reply = env.get(Some(&token), url).await;
        error_issue(&reply, 503, "transient");
    }
    assert_eq!(
        env.sandbox.stats().fhir_requests,
        handled,
        "faults never reach a handler"
    );
    for url in [&metadata, &discovery] {
        env.get(None, url).await.expect(200, "exempt from faults");
    }
    // The token endpoint is exempt too.
    let fresh = env.token(READ_ALL).await;

    // Throttling: 429 with Retry-After and code throttled.
    env.sandbox
        .set_faults(Faults {
            throttle_rate: 1.0,
            retry_after: Duration::from_secs(7),
            ..Faults::default()
        })
        .expect("valid faults");
    let reply = env.get(Some(&fresh), &read).await;
    error_issue(&reply, 429, "throttled");
    assert_eq!(reply.header("retry-after"), "7");
    env.get(None, &metadata).await.expect(200, "exempt");

    // Drops: the connection closes after part of the response, large or small: the status and
    // half the body arrive, then the body fails.
    env.sandbox
        .set_faults(Faults {
            drop_rate: 1.0,
            ..Faults::default()
        })
        .expect("valid faults");
    let large_page = env.url(
        "Observation",
        &[("patient", DERRICK), ("category", "vital-signs")],
    );
    let response = env
        .http
        .get(large_page.as_str())
        .bearer_auth(&token)
        .header("Accept", FHIR_JSON)
        .send()
        .await
        .expect("the head of a large page arrives");
    assert_eq!(response.status().as_u16(), 200);
    let error = response.bytes().await.expect_err("the body is cut");
    assert!(error.is_body() || error.is_decode(), "{error}");
    for url in [&read, &search] {
        let sent = env
            .http
            .get(url.as_str())
            .bearer_auth(&token)
            .header("Accept", FHIR_JSON)
            .send()
            .await;
        let response = sent.expect("the head arrives");
        assert_eq!(response.status().as_u16(), 200, "{url}");
        let error = response.bytes().await.expect_err("the body is cut");
        assert!(error.is_body() || error.is_decode(), "{url}: {error}");
    }

    // Invalid settings are refused and change nothing.
    let dropping = env.sandbox.faults();
    for bad in [
        Faults {
            error_rate: 1.5,
            ..Faults::default()
        },
        Faults {
            error_rate: 0.6,
            throttle_rate: 0.6,
            ..Faults::default()
        },
        Faults {
            drop_rate: -0.1,
            ..Faults::default()
        },
    ] {
        assert!(env.sandbox.set_faults(bad).is_err());
    }
    assert_eq!(env.sandbox.faults(), dropping);

    // Half the requests fail, deterministically for a seed; the counters agree with what the
    // client saw.
    let stats = env.sandbox.stats();
    env.sandbox
        .set_faults(Faults {
            error_rate: 0.5,
            seed: 7,
            ..Faults::default()
        })
        .expect("valid faults");
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(env.get(Some(&token), &read).await.status);
    }
    let errors = statuses.iter().filter(|s| **s == 503).count() as u64;
    let successes = statuses.iter().filter(|s| **s == 200).count() as u64;
    assert_eq!(errors + successes, 40, "{statuses:?}");
    assert!(errors > 5 && successes > 5, "{statuses:?}");
    let after = env.sandbox.stats();
    assert_eq!(after.injected_errors - stats.injected_errors, errors);
    assert_eq!(after.fhir_requests - stats.fhir_requests, successes);
    // The same seed gives the same sequence.
    env.sandbox
        .set_faults(Faults {
            error_rate: 0.5,
            seed: 7,
            ..Faults::default()
        })
        .expect("valid faults");
    let mut again = Vec::new();
    for _ in 0..40 {
        again.push(env.get(Some(&token), &read).await.status);
    }
    assert_eq!(again, statuses);

    // Back to normal.
    env.sandbox.set_faults(Faults::default()).expect("valid");
    env.get(Some(&token), &read).await.expect(200, "no faults");

    let after = env.sandbox.stats();
    assert_eq!(
        after.injected_errors - before.injected_errors,
        2 + errors * 2
    );
    assert_eq!(after.injected_throttles - before.injected_throttles, 1);
    assert_eq!(after.injected_drops - before.injected_drops, 3);
    assert_eq!(after.tokens_issued - before.tokens_issued, 1);
    assert_eq!(after.token_requests - before.token_requests, 1);
}

#[tokio::test]
async fn faults_configured_at_start_apply_from_the_first_request() {
    let env = Env::start(|c| {
        c.faults = Faults {
            throttle_rate: 1.0,
            retry_after: Duration::from_secs(3),
            ..Faults::default()
        }
    })
    .await;
    let token = env.token(READ_ALL).await;
    let reply = env
        .get(Some(&token), &env.url(&format!("Patient/{DERRICK}"), &[]))
        .await;
    error_issue(&reply, 429, "throttled");
    assert_eq!(reply.header("retry-after"), "3");
    assert_eq!(env.sandbox.stats().injected_throttles, 1);
}

#[tokio::test]
async fn short_token_lifetime_set_while_running_expires_tokens() {
    let env = Env::start(|_| {}).await;
    let long_lived = env.token(READ_ALL).await;
    env.sandbox.set_token_lifetime(Duration::from_secs(1));
    let assertion = sign(
        &env.key,
        Some(&env.key.kid),
        &claims(APP, env.sandbox.token_url().as_str()),
    );
    let (status, body) = exchange(&env.sandbox, &assertion).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 1);
    let short_lived = body["access_token"].as_str().expect("token").to_owned();
    let read = env.url(&format!("Patient/{DERRICK}"), &[]);
    env.get(Some(&short_lived), &read)
        .await
        .expect(200, "fresh token");

    tokio::time::sleep(Duration::from_millis(1300)).await;
    let reply = env.get(Some(&short_lived), &read).await;
    error_issue(&reply, 401, "login");
    assert!(
        reply
            .header("www-authenticate")
            .contains("error=\"invalid_token\""),
        "{}",
        reply.header("www-authenticate")
    );
    // Tokens issued before the change keep their lifetime.
    env.get(Some(&long_lived), &read)
        .await
        .expect(200, "long-lived token");
}
