//! The tenant/role matrix: every route that takes a token, called with every kind of token on
//! every tenant, checked against the access rule restated here as a table.
//!
//! The rule (`ringfence_core::access`): a token that cannot see a tenant is told 404
//! `not_found`, never 403, so ids of other tenants reveal nothing; a token that sees the tenant
//! but whose role may not do the thing is told 403 `forbidden`. The expectation is computed from
//! the tables below, never from `Principal::check`, so a change on either side shows up here.
//! A new route or a new token is one line in `ROUTES` or `TOKENS`.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use ringfence_core::access::Role;
use ringfence_core::{AccountId, AgencyId, CallId};

use crate::common::{TestApp, full_call, uk_number, us_number};

// ---------------------------------------------------------------------------------------------
// The world: agency A with accounts A1 and A2, agency B with account B1.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Agency {
    A,
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Tenant {
    A1,
    A2,
    B1,
}

impl Tenant {
    const ALL: [Tenant; 3] = [Tenant::A1, Tenant::A2, Tenant::B1];

    fn agency(self) -> Agency {
        match self {
            Tenant::A1 | Tenant::A2 => Agency::A,
            Tenant::B1 => Agency::B,
        }
    }

    /// The fiction-range number of the tenant's seed call.
    fn seed_number(self) -> u16 {
        match self {
            Tenant::A1 => 101,
            Tenant::A2 => 102,
            Tenant::B1 => 103,
        }
    }
}

/// Where a token reaches.
#[derive(Debug, Clone, Copy)]
enum Reach {
    Installation,
    Agency(Agency),
    Account(Tenant),
}

impl Reach {
    fn covers(self, tenant: Tenant) -> bool {
        match self {
            Reach::Installation => true,
            Reach::Agency(agency) => tenant.agency() == agency,
            Reach::Account(account) => tenant == account,
        }
    }
}

/// What a route does to a tenant's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Sends calls, sessions or recordings.
    Write,
    /// Reads the call log.
    Read,
    /// Plays a recording: a read that is also personal data whole.
    Recording,
}

/// What each role may do on a tenant it sees, restated from the role documentation.
const GRANTS: [(Role, &[Need]); 5] = [
    (Role::Admin, &[Need::Write, Need::Read, Need::Recording]),
    (
        Role::AgencyAdmin,
        &[Need::Write, Need::Read, Need::Recording],
    ),
    (
        Role::AccountAdmin,
        &[Need::Write, Need::Read, Need::Recording],
    ),
    (Role::Analyst, &[Need::Read, Need::Recording]),
    (Role::Ingest, &[Need::Write]),
];

/// What a request carries in its `Authorization` header.
#[derive(Debug, Clone, Copy)]
enum Credential {
    Token {
        role: Role,
        reach: Reach,
        personal_data: bool,
    },
    NoHeader,
    /// Sent as is.
    Header(&'static str),
    /// A real admin token, sent without the `Bearer` scheme.
    AdminTokenWithoutScheme,
}

const TOKENS: &[(&str, Credential)] = &[
    (
        "admin",
        Credential::Token {
            role: Role::Admin,
            reach: Reach::Installation,
            personal_data: true,
        },
    ),
    (
        "agency_admin of A",
        Credential::Token {
            role: Role::AgencyAdmin,
            reach: Reach::Agency(Agency::A),
            personal_data: true,
        },
    ),
    (
        "account_admin of A1",
        Credential::Token {
            role: Role::AccountAdmin,
            reach: Reach::Account(Tenant::A1),
            personal_data: true,
        },
    ),
    (
        "analyst of A1",
        Credential::Token {
            role: Role::Analyst,
            reach: Reach::Account(Tenant::A1),
            personal_data: true,
        },
    ),
    (
        "analyst of A1 without personal data",
        Credential::Token {
            role: Role::Analyst,
            reach: Reach::Account(Tenant::A1),
            personal_data: false,
        },
    ),
    (
        "analyst of agency A",
        Credential::Token {
            role: Role::Analyst,
            reach: Reach::Agency(Agency::A),
            personal_data: true,
        },
    ),
    (
        "ingest of A1",
        Credential::Token {
            role: Role::Ingest,
            reach: Reach::Account(Tenant::A1),
            personal_data: true,
        },
    ),
    (
        "ingest of agency A",
        Credential::Token {
            role: Role::Ingest,
            reach: Reach::Agency(Agency::A),
            personal_data: true,
        },
    ),
    ("no token", Credential::NoHeader),
    (
        "a Bearer header without a token",
        Credential::Header("Bearer"),
    ),
    (
        "a Basic header",
        Credential::Header("Basic dXNlcjpwYXNzd29yZA=="),
    ),
    (
        "an unknown token",
        Credential::Header(
            "Bearer rf_00000000000000000000000000000000000000000000000000000000000000ff",
        ),
    ),
    (
        "an admin token without its scheme",
        Credential::AdminTokenWithoutScheme,
    ),
];

// ---------------------------------------------------------------------------------------------
// The routes.

/// The id a route takes in its path, and what follows it.
#[derive(Debug, Clone, Copy)]
enum Keyed {
    /// `/api/v1/accounts/{account_id}` + suffix.
    Account(&'static str),
    /// `/api/v1/calls/{call_id}` + suffix.
    Call(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Payload {
    Nothing,
    Call,
    Batch,
    Session,
    Audio,
    /// `Range: bytes=0-9`.
    FirstTenBytes,
    /// A granted consent event.
    Consent,
    /// No body; the answer lists consent events.
    ConsentList,
}

struct Route {
    name: &'static str,
    method: Method,
    keyed: Keyed,
    payload: Payload,
    need: Need,
    success: StatusCode,
}

const ROUTES: &[Route] = &[
    Route {
        name: "POST /accounts/{a}/calls",
        method: Method::POST,
        keyed: Keyed::Account("/calls"),
        payload: Payload::Call,
        need: Need::Write,
        success: StatusCode::CREATED,
    },
    Route {
        name: "POST /accounts/{a}/calls/batch",
        method: Method::POST,
        keyed: Keyed::Account("/calls/batch"),
        payload: Payload::Batch,
        need: Need::Write,
        success: StatusCode::CREATED,
    },
    Route {
        name: "GET /accounts/{a}/calls",
        method: Method::GET,
        keyed: Keyed::Account("/calls"),
        payload: Payload::Nothing,
        need: Need::Read,
        success: StatusCode::OK,
    },
    Route {
        name: "GET /calls/{id}",
        method: Method::GET,
        keyed: Keyed::Call(""),
        payload: Payload::Nothing,
        need: Need::Read,
        success: StatusCode::OK,
    },
    Route {
        name: "PUT /calls/{id}/recording",
        method: Method::PUT,
        keyed: Keyed::Call("/recording"),
        payload: Payload::Audio,
        need: Need::Write,
        success: StatusCode::CREATED,
    },
    Route {
        name: "GET /calls/{id}/recording",
        method: Method::GET,
        keyed: Keyed::Call("/recording"),
        payload: Payload::Nothing,
        need: Need::Recording,
        success: StatusCode::OK,
    },
    Route {
        name: "GET /calls/{id}/recording with Range",
        method: Method::GET,
        keyed: Keyed::Call("/recording"),
        payload: Payload::FirstTenBytes,
        need: Need::Recording,
        success: StatusCode::PARTIAL_CONTENT,
    },
    Route {
        name: "POST /accounts/{a}/sessions",
        method: Method::POST,
        keyed: Keyed::Account("/sessions"),
        payload: Payload::Session,
        need: Need::Write,
        success: StatusCode::CREATED,
    },
    Route {
        name: "POST /accounts/{a}/consents",
        method: Method::POST,
        keyed: Keyed::Account("/consents"),
        payload: Payload::Consent,
        need: Need::Write,
        success: StatusCode::CREATED,
    },
    Route {
        name: "GET /accounts/{a}/consents",
        method: Method::GET,
        keyed: Keyed::Account("/consents"),
        payload: Payload::ConsentList,
        need: Need::Read,
        success: StatusCode::OK,
    },
];

/// Whose id goes into the path.
#[derive(Debug, Clone, Copy)]
enum Target {
    Tenant(Tenant),
    /// `not-a-uuid`.
    MalformedId,
    /// A well-formed id nobody has.
    UnknownId,
    /// An id of the wrong kind: agency A's id as an account, A1's session id as a call.
    IdOfAnotherKind,
}

const TARGETS: [Target; 6] = [
    Target::Tenant(Tenant::A1),
    Target::Tenant(Tenant::A2),
    Target::Tenant(Tenant::B1),
    Target::MalformedId,
    Target::UnknownId,
    Target::IdOfAnotherKind,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Success(StatusCode),
    Error(StatusCode, &'static str),
}

const UNAUTHORIZED: Expect = Expect::Error(StatusCode::UNAUTHORIZED, "unauthorized");
const NOT_FOUND: Expect = Expect::Error(StatusCode::NOT_FOUND, "not_found");
const FORBIDDEN: Expect = Expect::Error(StatusCode::FORBIDDEN, "forbidden");

/// The rule: authentication first, then whether the token sees the tenant (404), then whether
/// its role may (403). Personal data is a further condition on playing recordings.
fn expected(credential: Credential, route: &Route, target: Target) -> Expect {
    let Credential::Token {
        role,
        reach,
        personal_data,
    } = credential
    else {
        return UNAUTHORIZED;
    };
    let Target::Tenant(tenant) = target else {
        return NOT_FOUND;
    };
    if !reach.covers(tenant) {
        return NOT_FOUND;
    }
    let granted = GRANTS
        .iter()
        .any(|(r, needs)| *r == role && needs.contains(&route.need));
    if !granted || (route.need == Need::Recording && !personal_data) {
        return FORBIDDEN;
    }
    Expect::Success(route.success)
}

// ---------------------------------------------------------------------------------------------
// The fixture, and a model of what the server should hold.

/// Audio-ish bytes that name their origin, a few hundred of them.
fn recording_bytes(origin: &str) -> Vec<u8> {
    let mut bytes = b"RIFF\x00\x00\x00\x00WAVEfmt ".to_vec();
    while bytes.len() < 320 {
        bytes.extend_from_slice(format!("[{origin}]").as_bytes());
    }
    bytes
}

struct Answer {
    status: StatusCode,
    content_type: String,
    bytes: Vec<u8>,
    json: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

enum Body {
    Nothing,
    Json(Value),
    Audio(Vec<u8>),
    Range(&'static str),
}

struct Fixture {
    app: TestApp,
    agencies: BTreeMap<Agency, AgencyId>,
    accounts: BTreeMap<Tenant, AccountId>,
    seed_calls: BTreeMap<Tenant, String>,
    sessions: BTreeMap<Tenant, String>,
    /// The `Authorization` header of each entry of `TOKENS`, `None` for no header.
    headers: Vec<Option<String>>,
    /// The calls each account should hold.
    calls: BTreeMap<Tenant, BTreeSet<String>>,
    /// The recording each seed call should have.
    recordings: BTreeMap<Tenant, Vec<u8>>,
    /// The consent events each account should hold.
    consents: BTreeMap<Tenant, BTreeSet<String>>,
}

impl Fixture {
    async fn build() -> Fixture {
        let app = TestApp::spawn().await;
        let agencies = BTreeMap::from([
            (Agency::A, app.agency(true).await),
            (Agency::B, app.agency(true).await),
        ]);
        let mut accounts = BTreeMap::new();
        for tenant in Tenant::ALL {
            accounts.insert(tenant, app.account(agencies[&tenant.agency()]).await);
        }
        let mut fixture = Fixture {
            app,
            agencies,
            accounts,
            seed_calls: BTreeMap::new(),
            sessions: BTreeMap::new(),
            headers: Vec::new(),
            calls: BTreeMap::new(),
            recordings: BTreeMap::new(),
            consents: Tenant::ALL
                .into_iter()
                .map(|t| (t, BTreeSet::new()))
                .collect(),
        };
        let admin = format!("Bearer {}", fixture.app.admin);
        for tenant in Tenant::ALL {
            let account = fixture.accounts[&tenant];
            let session = json!({"external_id": format!("seed-session-{tenant:?}"), "started_at": "2026-11-28T09:58:00Z", "ip": "203.0.113.7",
                                 "user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "landing_url": "https://shop.example/winter", "utm_source": "google"});
            let answer = fixture
                .request(
                    Method::POST,
                    Some(&admin),
                    &format!("/api/v1/accounts/{account}/sessions"),
                    Body::Json(session),
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "seed session of {tenant:?}: {}",
                answer.json
            );
            let session_id = answer.json["id"].as_str().expect("session id").to_owned();

            let mut call = full_call(tenant.seed_number());
            let fields = call.as_object_mut().expect("call object");
            fields.remove("visitor");
            fields.insert("session_id".into(), json!(session_id));
            let call_id = fixture.app.ingest(account, call).await;

            let audio = recording_bytes(&format!("seed recording of {tenant:?}"));
            let answer = fixture
                .request(
                    Method::PUT,
                    Some(&admin),
                    &format!("/api/v1/calls/{call_id}/recording"),
                    Body::Audio(audio.clone()),
                )
                .await;
            assert_eq!(
                answer.status,
                StatusCode::CREATED,
                "seed recording of {tenant:?}: {}",
                answer.json
            );

            fixture.sessions.insert(tenant, session_id);
            fixture
                .calls
                .insert(tenant, BTreeSet::from([call_id.clone()]));
            fixture.seed_calls.insert(tenant, call_id);
            fixture.recordings.insert(tenant, audio);
        }
        for (_, credential) in TOKENS {
            let header = match *credential {
                Credential::Token {
                    role,
                    reach,
                    personal_data,
                } => {
                    let (agency, account) = match reach {
                        Reach::Installation => (None, None),
                        Reach::Agency(a) => (Some(fixture.agencies[&a]), None),
                        Reach::Account(t) => (None, Some(fixture.accounts[&t])),
                    };
                    Some(format!(
                        "Bearer {}",
                        fixture
                            .app
                            .token(role, agency, account, personal_data)
                            .await
                    ))
                }
                Credential::NoHeader => None,
                Credential::Header(value) => Some(value.to_owned()),
                Credential::AdminTokenWithoutScheme => Some(fixture.app.admin.clone()),
            };
            fixture.headers.push(header);
        }
        fixture
    }

    fn admin(&self) -> String {
        format!("Bearer {}", self.app.admin)
    }

    async fn request(
        &self,
        method: Method,
        authorization: Option<&str>,
        path: &str,
        body: Body,
    ) -> Answer {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request = match body {
            Body::Nothing => request,
            Body::Json(value) => request.json(&value),
            Body::Audio(bytes) => request.header(CONTENT_TYPE, "audio/wav").body(bytes),
            Body::Range(range) => request.header(RANGE, range),
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let bytes = response.bytes().await.expect("body").to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            content_type,
            bytes,
            json,
        }
    }

    fn path(&self, keyed: Keyed, target: Target) -> String {
        let id = match (keyed, target) {
            (Keyed::Account(_), Target::Tenant(t)) => self.accounts[&t].to_string(),
            (Keyed::Call(_), Target::Tenant(t)) => self.seed_calls[&t].clone(),
            (_, Target::MalformedId) => "not-a-uuid".to_owned(),
            (Keyed::Account(_), Target::UnknownId) => AccountId::generate().to_string(),
            (Keyed::Call(_), Target::UnknownId) => CallId::generate().to_string(),
            (Keyed::Account(_), Target::IdOfAnotherKind) => self.agencies[&Agency::A].to_string(),
            (Keyed::Call(_), Target::IdOfAnotherKind) => self.sessions[&Tenant::A1].clone(),
        };
        match keyed {
            Keyed::Account(suffix) => format!("/api/v1/accounts/{id}{suffix}"),
            Keyed::Call(suffix) => format!("/api/v1/calls/{id}{suffix}"),
        }
    }

    fn body(payload: Payload, case: usize) -> Body {
        let call = |tag: &str| {
            json!({"external_id": format!("matrix-{case}-{tag}"), "started_at": "2026-11-28T11:00:00Z", "tracking_number": us_number(case as u16),
                   "caller_number": uk_number(case as u16), "transcript": format!("matrix case {case}")})
        };
        match payload {
            Payload::Nothing => Body::Nothing,
            Payload::Call => Body::Json(call("single")),
            Payload::Batch => Body::Json(json!({"calls": [call("first"), call("second")]})),
            Payload::Session => Body::Json(
                json!({"external_id": format!("matrix-session-{case}"), "started_at": "2026-11-28T10:59:00Z", "ip": "203.0.113.9"}),
            ),
            Payload::Audio => Body::Audio(recording_bytes(&format!("matrix case {case}"))),
            Payload::FirstTenBytes => Body::Range("bytes=0-9"),
            Payload::Consent => Body::Json(
                json!({"subject": {"caller_number": uk_number(case as u16)}, "category": "recording", "status": "granted", "method": "api"}),
            ),
            Payload::ConsentList => Body::Nothing,
        }
    }

    /// The ids of an account's calls, as the admin sees them.
    async fn stored_calls(&self, tenant: Tenant) -> BTreeSet<String> {
        let answer = self
            .request(
                Method::GET,
                Some(&self.admin()),
                &format!(
                    "/api/v1/accounts/{}/calls?limit=500",
                    self.accounts[&tenant]
                ),
                Body::Nothing,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "admin lists {tenant:?}: {}",
            answer.json
        );
        assert!(
            answer.json["next_cursor"].is_null(),
            "more than 500 calls in {tenant:?}"
        );
        answer.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|c| c["id"].as_str().expect("call id").to_owned())
            .collect()
    }

    async fn stored_recording(&self, tenant: Tenant) -> Vec<u8> {
        let answer = self
            .request(
                Method::GET,
                Some(&self.admin()),
                &format!("/api/v1/calls/{}/recording", self.seed_calls[&tenant]),
                Body::Nothing,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "admin plays {tenant:?}: {}",
            answer.json
        );
        answer.bytes
    }

    /// Compares what the server holds with the model: a denied write must have stored nothing,
    /// an allowed one exactly in its own tenant.
    async fn compare_with_model(&self, case: &str, failures: &mut Vec<String>) {
        for tenant in Tenant::ALL {
            let stored = self.stored_calls(tenant).await;
            let model = &self.calls[&tenant];
            if &stored != model {
                let extra: Vec<_> = stored.difference(model).collect();
                let missing: Vec<_> = model.difference(&stored).collect();
                failures.push(format!("{case}: calls of {tenant:?} differ from the model: unexpected {extra:?}, missing {missing:?}"));
            }
            if self.stored_recording(tenant).await != self.recordings[&tenant] {
                failures.push(format!(
                    "{case}: the recording of {tenant:?}'s call changed"
                ));
            }
        }
    }

    /// Checks a successful answer holds the target tenant's data only, shown as the token may
    /// see it, and records what it stored in the model.
    async fn check_success(
        &mut self,
        case: &str,
        route: &Route,
        credential: Credential,
        tenant: Tenant,
        case_number: usize,
        answer: &Answer,
        failures: &mut Vec<String>,
    ) {
        let personal_data = matches!(
            credential,
            Credential::Token {
                personal_data: true,
                ..
            }
        );
        let account = self.accounts[&tenant].to_string();
        let mut fail = |message: String| failures.push(format!("{case}: {message}"));
        match route.payload {
            Payload::Call => {
                if answer.json["account_id"] != json!(account) {
                    fail(format!(
                        "the stored call names account {} instead of {tenant:?}",
                        answer.json["account_id"]
                    ));
                }
                if let Some(id) = answer.json["id"].as_str() {
                    self.calls
                        .get_mut(&tenant)
                        .expect("tenant")
                        .insert(id.to_owned());
                }
            }
            Payload::Batch => {
                let ids: Vec<String> = answer.json["ids"]
                    .as_array()
                    .map(|ids| {
                        ids.iter()
                            .filter_map(|i| i.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.len() != 2 {
                    fail(format!("a batch of 2 answered {}", answer.json));
                }
                self.calls.get_mut(&tenant).expect("tenant").extend(ids);
            }
            Payload::Session => {
                // Re-sending the external id to the target answers 200 with the same id only if
                // the session landed there.
                let Body::Json(body) = Self::body(Payload::Session, case_number) else {
                    unreachable!("a session is JSON")
                };
                let probe = self
                    .request(
                        Method::POST,
                        Some(&self.admin()),
                        &format!("/api/v1/accounts/{account}/sessions"),
                        Body::Json(body),
                    )
                    .await;
                if probe.status != StatusCode::OK || probe.json["id"] != answer.json["id"] {
                    fail(format!(
                        "the session is not stored in {tenant:?}: re-sending it answered {} {}",
                        probe.status, probe.json
                    ));
                }
            }
            Payload::Audio => {
                let expected = self.seed_calls[&tenant].as_str();
                if !answer.json["url"]
                    .as_str()
                    .is_some_and(|url| url.contains(expected))
                {
                    fail(format!(
                        "the recording answer names another call: {}",
                        answer.json
                    ));
                }
                let Body::Audio(bytes) = Self::body(Payload::Audio, case_number) else {
                    unreachable!("audio is bytes")
                };
                self.recordings.insert(tenant, bytes);
            }
            Payload::Consent => match answer.json["id"].as_str() {
                Some(id) => {
                    self.consents
                        .get_mut(&tenant)
                        .expect("tenant")
                        .insert(id.to_owned());
                }
                None => fail(format!("a consent answer without an id: {}", answer.json)),
            },
            Payload::ConsentList => {
                let returned: BTreeSet<String> = answer.json["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect();
                if returned != self.consents[&tenant] {
                    fail(format!(
                        "listed consents {returned:?}, expected {:?}",
                        self.consents[&tenant]
                    ));
                }
                for item in answer.json["items"].as_array().into_iter().flatten() {
                    if item["subject"].is_null() == personal_data {
                        fail(format!("consent subject shown wrongly: {item}"));
                    }
                }
            }
            Payload::Nothing | Payload::FirstTenBytes => match route.need {
                Need::Recording => {
                    let whole = &self.recordings[&tenant];
                    let expected = if route.payload == Payload::FirstTenBytes {
                        &whole[..10]
                    } else {
                        &whole[..]
                    };
                    if answer.bytes != expected {
                        fail(format!(
                            "played {} bytes that are not {tenant:?}'s recording: {:?}",
                            answer.bytes.len(),
                            String::from_utf8_lossy(&answer.bytes)
                        ));
                    }
                    if answer.content_type != "audio/wav" {
                        fail(format!("recording served as {:?}", answer.content_type));
                    }
                }
                Need::Read => {
                    let items: Vec<Value> = match route.keyed {
                        Keyed::Account(_) => {
                            answer.json["items"].as_array().cloned().unwrap_or_default()
                        }
                        Keyed::Call(_) => vec![answer.json.clone()],
                    };
                    let returned: BTreeSet<String> = items
                        .iter()
                        .filter_map(|c| c["id"].as_str().map(str::to_owned))
                        .collect();
                    for other in Tenant::ALL.into_iter().filter(|t| *t != tenant) {
                        let leaked: Vec<_> = returned.intersection(&self.calls[&other]).collect();
                        if !leaked.is_empty() {
                            fail(format!("leaks calls of {other:?}: {leaked:?}"));
                        }
                    }
                    let wanted = match route.keyed {
                        Keyed::Account(_) => self.calls[&tenant].clone(),
                        Keyed::Call(_) => BTreeSet::from([self.seed_calls[&tenant].clone()]),
                    };
                    if returned != wanted {
                        fail(format!("returned calls {returned:?}, expected {wanted:?}"));
                    }
                    for call in &items {
                        if call["account_id"] != json!(account) {
                            fail(format!(
                                "call {} names account {}",
                                call["id"], call["account_id"]
                            ));
                        }
                        let is_seed =
                            call["id"].as_str() == Some(self.seed_calls[&tenant].as_str());
                        for problem in view_problems(
                            call,
                            personal_data,
                            is_seed.then(|| (tenant, self.sessions[&tenant].as_str())),
                        ) {
                            fail(format!("call {}: {problem}", call["id"]));
                        }
                    }
                }
                Need::Write => fail("a write route without a body".to_owned()),
            },
        }
    }
}

/// What is wrong with how a call is shown to a token with or without personal data. For the
/// seed call (`seed` = its tenant and session), also that its content is its own.
fn view_problems(call: &Value, personal_data: bool, seed: Option<(Tenant, &str)>) -> Vec<String> {
    let mut problems = Vec::new();
    if personal_data {
        if let Some((tenant, session)) = seed {
            let number = uk_number(tenant.seed_number());
            if call["caller"]["number"] != json!(number) {
                problems.push(format!(
                    "caller.number is {} instead of {number}",
                    call["caller"]["number"]
                ));
            }
            if !call["transcript"].is_string() {
                problems.push("the transcript is missing".to_owned());
            }
            if call["visitor"]["session_id"] != json!(session) {
                problems.push(format!(
                    "visitor.session_id is {} instead of {session}",
                    call["visitor"]["session_id"]
                ));
            }
            if call["recording"].is_null() {
                problems.push("the recording is missing".to_owned());
            }
        }
        if call["masked"] == json!(true) {
            problems.push("masked for a token that may see personal data".to_owned());
        }
    } else {
        let number = call["caller"]["number"].as_str().unwrap_or_default();
        if !number.contains('•') {
            problems.push(format!("caller.number {number:?} is not masked"));
        }
        if let Some((tenant, _)) = seed {
            let raw = uk_number(tenant.seed_number());
            if number == raw || !number.ends_with(&raw[raw.len() - 2..]) {
                problems.push(format!("caller.number {number:?} is not {raw} masked"));
            }
        }
        for field in ["transcript", "visitor", "recording", "notes"] {
            if !call[field].is_null() {
                problems.push(format!(
                    "{field} shown without personal data: {}",
                    call[field]
                ));
            }
        }
        for field in ["name", "city", "region", "postal_code", "country"] {
            if !call["caller"][field].is_null() {
                problems.push(format!("caller.{field} shown without personal data"));
            }
        }
        if call["tags"] != json!([]) {
            problems.push(format!(
                "tags shown without personal data: {}",
                call["tags"]
            ));
        }
        if call["masked"] != json!(true) {
            problems.push("not marked masked".to_owned());
        }
    }
    problems
}

fn describe(target: Target) -> String {
    match target {
        Target::Tenant(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test]
async fn every_role_reaches_exactly_its_own_tenants_on_every_route() {
    let mut fixture = Fixture::build().await;
    let mut failures = Vec::new();
    let mut cases = 0;
    for route in ROUTES {
        for (token_index, (token, credential)) in TOKENS.iter().enumerate() {
            for target in TARGETS {
                cases += 1;
                let case = format!(
                    "case {cases}: {} as {token} on {}",
                    route.name,
                    describe(target)
                );
                let expect = expected(*credential, route, target);
                let path = fixture.path(route.keyed, target);
                let header = fixture.headers[token_index].clone();
                let answer = fixture
                    .request(
                        route.method.clone(),
                        header.as_deref(),
                        &path,
                        Fixture::body(route.payload, cases),
                    )
                    .await;
                let matches = match expect {
                    Expect::Success(status) => answer.status == status,
                    Expect::Error(status, code) => answer.status == status && answer.code() == code,
                };
                // A tenant the token cannot see is answered word for word like one that
                // does not exist: the message must not tell them apart either.
                let expected_message = match route.keyed {
                    Keyed::Account(_) => "account not found",
                    _ => "call not found",
                };
                if answer.status == StatusCode::NOT_FOUND
                    && answer.json["error"]["message"] != expected_message
                    && !(route.method == Method::GET
                        && answer.json["error"]["message"] == "recording not found")
                {
                    failures.push(format!(
                        "{case}: a 404 that differs from the unknown-id answer: {}",
                        answer.json
                    ));
                }
                if !matches {
                    failures.push(format!(
                        "{case}: expected {expect:?}, got {} {:?} ({})",
                        answer.status,
                        answer.code(),
                        String::from_utf8_lossy(&answer.bytes)
                    ));
                } else if let (Expect::Success(_), Target::Tenant(tenant)) = (expect, target) {
                    fixture
                        .check_success(
                            &case,
                            route,
                            *credential,
                            tenant,
                            cases,
                            &answer,
                            &mut failures,
                        )
                        .await;
                }
                if route.need == Need::Write {
                    if route.payload == Payload::Session {
                        if let (Expect::Error(..), Target::Tenant(tenant)) = (expect, target) {
                            // Nothing stored: the first admin delivery of the external id is new.
                            let Body::Json(body) = Fixture::body(Payload::Session, cases) else {
                                unreachable!("a session is JSON")
                            };
                            let path =
                                format!("/api/v1/accounts/{}/sessions", fixture.accounts[&tenant]);
                            let probe = fixture
                                .request(
                                    Method::POST,
                                    Some(&fixture.admin()),
                                    &path,
                                    Body::Json(body),
                                )
                                .await;
                            if probe.status != StatusCode::CREATED {
                                failures.push(format!("{case}: a denied session was stored: re-sending it answered {} {}", probe.status, probe.json));
                            }
                        }
                    } else if route.payload == Payload::Consent {
                        // A denied consent is in no ledger; an accepted one in its own only.
                        for tenant in Tenant::ALL {
                            let answer = fixture
                                .request(
                                    Method::GET,
                                    Some(&fixture.admin()),
                                    &format!(
                                        "/api/v1/accounts/{}/consents?limit=500",
                                        fixture.accounts[&tenant]
                                    ),
                                    Body::Nothing,
                                )
                                .await;
                            let held: BTreeSet<String> = answer.json["items"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|c| c["id"].as_str().map(str::to_owned))
                                .collect();
                            if held != fixture.consents[&tenant] {
                                failures.push(format!(
                                    "{case}: {tenant:?} holds consents {held:?}, expected {:?}",
                                    fixture.consents[&tenant]
                                ));
                            }
                        }
                    } else {
                        fixture.compare_with_model(&case, &mut failures).await;
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} problems in {cases} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
    fixture.app.stop().await;
}

#[tokio::test]
async fn a_call_never_links_a_session_of_another_tenant() {
    let fixture = Fixture::build().await;
    let admin = fixture.admin();
    let a1 = fixture.accounts[&Tenant::A1];
    let before = fixture.stored_calls(Tenant::A1).await;
    // (whose session, what the link answers)
    let cases = [
        (Tenant::A2, StatusCode::UNPROCESSABLE_ENTITY),
        (Tenant::B1, StatusCode::UNPROCESSABLE_ENTITY),
        (Tenant::A1, StatusCode::CREATED),
    ];
    let mut failures = Vec::new();
    for (n, (owner, status)) in cases.into_iter().enumerate() {
        let session = &fixture.sessions[&owner];
        let call = json!({"external_id": format!("link-{n}"), "started_at": "2026-11-28T12:00:00Z", "tracking_number": us_number(50), "session_id": session});
        for (route, body) in [
            ("/calls", call.clone()),
            ("/calls/batch", json!({"calls": [call.clone()]})),
        ] {
            let answer = fixture
                .request(
                    Method::POST,
                    Some(&admin),
                    &format!("/api/v1/accounts/{a1}{route}"),
                    Body::Json(body),
                )
                .await;
            // The batch re-delivers the single call's external id: 200 once it is stored.
            let wanted = if route.ends_with("batch") && status == StatusCode::CREATED {
                StatusCode::OK
            } else {
                status
            };
            if answer.status != wanted {
                failures.push(format!(
                    "POST {route} to A1 linking {owner:?}'s session: expected {wanted}, got {} {}",
                    answer.status, answer.json
                ));
            }
            if wanted == StatusCode::UNPROCESSABLE_ENTITY && answer.code() != "invalid_field" {
                failures.push(format!(
                    "POST {route} to A1 linking {owner:?}'s session: code {:?}",
                    answer.code()
                ));
            }
        }
    }
    let added: Vec<_> = fixture
        .stored_calls(Tenant::A1)
        .await
        .difference(&before)
        .cloned()
        .collect();
    if added.len() != 1 {
        failures.push(format!(
            "only the call linking A1's own session should be stored, got {added:?}"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    fixture.app.stop().await;
}
