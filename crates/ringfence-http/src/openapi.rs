//! The OpenAPI document's shared parts: the bearer scheme and the error responses.
//!
//! A route's annotation lists the error codes of each error status it answers, as
//! `extensions((ERROR_CODES = json!([Code::NotFound])))`; [`ErrorResponses`] adds the answers
//! the shared extractors and layers give (the bearer token, a JSON body, the header cap) and
//! turns every error response into one that names its codes: its description lists each code
//! with the line [`Code::description`] gives it, and its schema allows exactly those codes in
//! `error.code`. A conformance client therefore flags a code the document does not list.

use std::collections::{BTreeMap, BTreeSet};

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, PartialSchema, ToSchema};

use crate::error::Code;

/// The extension on a response that lists its error codes.
pub const ERROR_CODES: &str = "x-error-codes";

/// The `bearer` security scheme the routes' `security(("bearer" = []))` refers to.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Completes every operation's error responses (see the module's documentation).
pub struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                complete(operation);
            }
        }
    }
}

/// The codes the shared extractors and layers answer on `operation`, by status.
fn shared_codes(operation: &Operation) -> BTreeMap<u16, Vec<Code>> {
    let mut shared: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    let mut add = |code: Code| shared.entry(code.status().as_u16()).or_default().push(code);
    if operation.security.is_some() {
        add(Code::Unauthorized);
    }
    let json_body = matches!(
        &operation.request_body,
        Some(RefOr::T(body)) if body.content.contains_key("application/json")
    );
    if json_body {
        for code in [
            Code::InvalidJson,
            Code::PayloadTooLarge,
            Code::UnsupportedMediaType,
            Code::InvalidField,
            Code::MissingField,
            Code::UnknownField,
        ] {
            add(code);
        }
    }
    add(Code::HeadersTooLarge);
    shared
}

/// The codes a response's annotation lists.
fn listed_codes(response: &Response) -> Vec<Code> {
    let Some(value) = response
        .extensions
        .as_ref()
        .and_then(|e| e.get(ERROR_CODES))
    else {
        return Vec::new();
    };
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let name = v.as_str().unwrap_or_default();
            // The annotations name `Code` variants, so an unknown name cannot compile in.
            Code::parse(name).unwrap_or_else(|| panic!("{name:?} is not an error code"))
        })
        .collect()
}

fn complete(operation: &mut Operation) {
    let mut shared = shared_codes(operation);
    for status in shared.keys() {
        operation
            .responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::new("")));
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        let Some(status) = status
            .parse::<u16>()
            .ok()
            .filter(|s| (400..600).contains(s))
        else {
            continue;
        };
        if let RefOr::T(response) = response {
            let mut codes = listed_codes(response);
            codes.extend(shared.remove(&status).unwrap_or_default());
            if !codes.is_empty() {
                set_codes(response, &codes);
            }
        }
    }
}

/// Makes `response` name exactly `codes`: its extension, its description and its schema.
fn set_codes(response: &mut Response, codes: &[Code]) {
    let codes: BTreeSet<Code> = codes.iter().copied().collect();
    let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
    let mut extensions = response.extensions.take().unwrap_or_default();
    extensions.insert(ERROR_CODES.to_owned(), serde_json::json!(names));
    // The route's own words (what a 404 is about), then each code's line.
    let own = response.description.trim().to_owned();
    let lines: Vec<String> = codes
        .iter()
        .map(|c| format!("`{}`: {}", c.as_str(), c.description()))
        .collect();
    let description = if own.is_empty() {
        lines.join("\n\n")
    } else {
        format!("{own}\n\n{}", lines.join("\n\n"))
    };
    let narrowed = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some(names.clone())),
                )
                .required("code"),
        )
        .required("error");
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorEnvelope"))
        .item(narrowed)
        .build();
    let headers = std::mem::take(&mut response.headers);
    let mut rebuilt = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Schema::AllOf(schema))),
        )
        .build();
    rebuilt.headers = headers;
    rebuilt.extensions = Some(extensions);
    *response = rebuilt;
}

/// Every error code with its status and meaning, as the document's `ErrorCode` schema.
impl PartialSchema for Code {
    fn schema() -> RefOr<Schema> {
        let table: Vec<String> = Code::ALL
            .iter()
            .map(|c| {
                format!(
                    "- `{}` ({}): {}",
                    c.as_str(),
                    c.status().as_u16(),
                    c.description()
                )
            })
            .collect();
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(Code::ALL.iter().map(|c| c.as_str())))
            .description(Some(format!(
                "The stable error codes, with the status each is answered with (a field code about a query string or a path is answered as 400):\n\n{}",
                table.join("\n")
            )))
            .into()
    }
}

impl ToSchema for Code {
    fn name() -> std::borrow::Cow<'static, str> {
        "ErrorCode".into()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::IpAddr;

    use serde_json::Value;
    use utoipa::OpenApi;

    use super::*;
    use crate::ApiDoc;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serialises")
    }

    /// Every operation of the document: (`METHOD path`, operation).
    fn operations(doc: &Value) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("path item") {
                out.push((
                    format!("{} {path}", method.to_uppercase()),
                    operation.clone(),
                ));
            }
        }
        assert!(out.len() > 30, "the document lists the API's operations");
        out
    }

    /// The component a `$ref` names, if the schema is one (or offers one among `oneOf`).
    fn referenced<'a>(doc: &'a Value, schema: &Value) -> Option<&'a Value> {
        let name = schema["$ref"].as_str().or_else(|| {
            schema["oneOf"]
                .as_array()?
                .iter()
                .find_map(|s| s["$ref"].as_str())
        })?;
        let name = name.strip_prefix("#/components/schemas/")?;
        doc["components"]["schemas"].get(name)
    }

    #[test]
    fn error_codes_are_unique_and_each_has_a_status_and_a_description() {
        let mut seen = BTreeSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "{code:?} repeats a code");
            assert_eq!(Code::parse(code.as_str()), Some(*code));
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code:?}: codes are snake_case"
            );
            let status = code.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?} answers {status}"
            );
            assert!(
                !code.description().is_empty(),
                "{code:?} has no description"
            );
        }
        assert_eq!(Code::parse("no_such_code"), None);
    }

    #[test]
    fn every_error_response_names_its_codes_and_each_code_fits_its_status() {
        let doc = document();
        for (operation, op) in operations(&doc) {
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.contains_key("431"),
                "{operation}: the header cap is documented"
            );
            for (status, response) in responses {
                let status: u16 = status.parse().expect("a numeric status");
                let is_error_envelope = response["content"]["application/json"]["schema"]
                    .to_string()
                    .contains("ErrorEnvelope");
                // A readiness verdict (503 with its own body) is not an error envelope.
                if status < 400 || (status >= 500 && !is_error_envelope) {
                    continue;
                }
                let codes: Vec<&str> = response[ERROR_CODES]
                    .as_array()
                    .unwrap_or_else(|| panic!("{operation} {status}: no error codes"))
                    .iter()
                    .map(|c| c.as_str().expect("a code is a string"))
                    .collect();
                assert!(!codes.is_empty(), "{operation} {status}: no error codes");
                for name in &codes {
                    let code = Code::parse(name)
                        .unwrap_or_else(|| panic!("{operation} {status}: unknown code {name}"));
                    let usual = code.status().as_u16();
                    assert!(
                        usual == status || (status == 400 && usual == 422),
                        "{operation}: {name} is answered {usual}, documented under {status}"
                    );
                    let description = response["description"].as_str().unwrap_or_default();
                    assert!(
                        description.contains(&format!("`{name}`: {}", code.description())),
                        "{operation} {status}: the description lists {name}"
                    );
                }
                let schema = &response["content"]["application/json"]["schema"];
                let allowed =
                    &schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"];
                assert_eq!(
                    allowed,
                    &serde_json::json!(codes),
                    "{operation} {status}: the schema allows exactly the listed codes"
                );
                assert_eq!(
                    schema["allOf"][0]["$ref"], "#/components/schemas/ErrorEnvelope",
                    "{operation} {status}: the body is the error envelope"
                );
            }
        }
    }

    #[test]
    fn every_operation_with_a_json_body_documents_the_json_body_errors() {
        let doc = document();
        for (operation, op) in operations(&doc) {
            if op["requestBody"]["content"]
                .get("application/json")
                .is_none()
            {
                continue;
            }
            for (status, code) in [
                ("400", "invalid_json"),
                ("413", "payload_too_large"),
                ("415", "unsupported_media_type"),
                ("422", "unknown_field"),
            ] {
                let codes = &op["responses"][status][ERROR_CODES];
                assert!(
                    codes
                        .as_array()
                        .is_some_and(|c| c.iter().any(|c| c == code)),
                    "{operation}: {status} {code} is documented"
                );
            }
        }
    }

    #[test]
    fn every_request_body_has_an_example() {
        let doc = document();
        let mut bodies = 0;
        for (operation, op) in operations(&doc) {
            let Some(content) = op["requestBody"]["content"].as_object() else {
                continue;
            };
            for (media, body) in content {
                // Audio is bytes: there is no text to show.
                if media.starts_with("audio/") {
                    continue;
                }
                bodies += 1;
                let example = body
                    .get("example")
                    .or_else(|| referenced(&doc, &body["schema"])?.get("example"));
                let Some(example) = example else {
                    panic!("{operation} ({media}): the request body has no example");
                };
                assert!(
                    example.as_object().is_some_and(|o| !o.is_empty()),
                    "{operation} ({media}): the example is an object with fields"
                );
            }
        }
        assert!(bodies > 15, "the document's request bodies were found");
    }

    #[test]
    fn a_notices_path_category_is_one_a_consent_can_be_asked_for() {
        let doc = document();
        let op = &doc["paths"]["/api/v1/accounts/{account_id}/notices/{category}/{version}"]["put"];
        let category = op["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "category")
            .expect("the category parameter");
        assert_eq!(
            category["schema"]["enum"],
            serde_json::json!(crate::schemas::CONSENT_CATEGORIES)
        );
    }

    /// Phone numbers from the ranges set aside for fiction, IPs from the documentation ranges.
    fn synthetic(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::String(s) => {
                if s.starts_with('+') && s.len() > 8 && s[1..].bytes().all(|b| b.is_ascii_digit()) {
                    let uk = s.len() == 13 && s.starts_with("+442079460");
                    let nanp = s.len() == 12 && s.starts_with("+1") && &s[5..10] == "55501";
                    if !(uk || nanp) {
                        found.push(s.clone());
                    }
                }
                if let Ok(ip) = s.parse::<IpAddr>() {
                    let documentation = match ip {
                        IpAddr::V4(v4) => {
                            let [a, b, c, _] = v4.octets();
                            matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
                        }
                        IpAddr::V6(v6) => v6.segments()[..2] == [0x2001, 0x0db8],
                    };
                    if !documentation {
                        found.push(s.clone());
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| synthetic(v, found)),
            Value::Object(fields) => fields.values().for_each(|v| synthetic(v, found)),
            _ => {}
        }
    }

    #[test]
    fn the_documents_examples_use_only_fiction_numbers_and_documentation_addresses() {
        let doc = document();
        let mut examples = Vec::new();
        for (_, op) in operations(&doc) {
            for body in op["requestBody"]["content"]
                .as_object()
                .into_iter()
                .flat_map(|c| c.values())
            {
                examples.extend(body.get("example").cloned());
            }
        }
        for schema in doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .values()
        {
            examples.extend(schema.get("example").cloned());
        }
        assert!(examples.len() > 15, "the examples were found");
        let mut found = Vec::new();
        for example in &examples {
            synthetic(example, &mut found);
        }
        assert!(found.is_empty(), "not synthetic: {found:?}");
        let mut caught = Vec::new();
        synthetic(
            &serde_json::json!({"n": "+493012345678", "ip": "8.8.8.8", "ok": "+442079460123"}),
            &mut caught,
        );
        caught.sort();
        assert_eq!(
            caught,
            ["+493012345678", "8.8.8.8"],
            "the check itself finds real ones"
        );
    }
}
