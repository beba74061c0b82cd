//! Schemas for the OpenAPI document where a field's Rust type (`String`, `Option<String>`)
//! says less than the rule the handler applies: enumerations, number shapes, lengths.
//! Optional fields accept `null` as absence, so their schemas allow it.

use serde_json::Value;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

fn string(nullable: bool) -> ObjectBuilder {
    if nullable {
        ObjectBuilder::new().schema_type(SchemaType::from_iter([Type::String, Type::Null]))
    } else {
        ObjectBuilder::new().schema_type(Type::String)
    }
}

fn one_of(values: &[&str], nullable: bool) -> Object {
    let mut all: Vec<Value> = values.iter().map(|v| Value::from(*v)).collect();
    if nullable {
        all.push(Value::Null);
    }
    string(nullable).enum_values(Some(all)).build()
}

/// An E.164 number's shape: `+`, a country code, up to 15 digits. The server also checks
/// the number against its country's numbering plan.
pub const E164_PATTERN: &str = r"^\+[1-9][0-9]{6,14}$";

pub fn e164() -> Object {
    string(false).pattern(Some(E164_PATTERN)).build()
}

pub const CONSENT_CATEGORIES: &[&str] = &[
    "caller_identity",
    "caller_location",
    "recording",
    "transcript",
    "visitor",
    "interaction_content",
];

pub fn consent_category() -> Object {
    one_of(CONSENT_CATEGORIES, false)
}

pub fn consent_status() -> Object {
    one_of(&["granted", "withdrawn"], false)
}

pub fn consent_method() -> Object {
    one_of(&["ivr_keypress", "verbal", "web_form", "api"], false)
}

/// A caller number: E.164, or withheld (empty or one of the carriers' words); null is absent.
pub fn caller_number() -> Object {
    string(true)
        .pattern(Some(
            r"^(\+[1-9][0-9]{6,14}|anonymous|restricted|private|unknown|unavailable|withheld|)$",
        ))
        .build()
}

/// `inbound` or `outbound` (and Twilio's outbound flavours); empty or null is absent.
pub fn direction() -> Object {
    one_of(
        &["inbound", "outbound", "outbound-api", "outbound-dial", ""],
        true,
    )
}

/// Twilio's call statuses; empty or null is absent.
pub fn call_status() -> Object {
    let mut all: Vec<&str> = ringfence_core::call::CallStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    all.push("");
    one_of(&all, true)
}

/// An RFC 3339 instant with a time zone, from 1990 to 9999 (days up to 28 in the pattern:
/// the server takes every real date).
pub const INSTANT: &str = r"^(199[0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// Text on one line: no control characters.
pub const ONE_LINE: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

/// A call's tags: at most 50, each 1 to 64 bytes on one line, not blank; null is none.
pub fn tags() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::ArrayBuilder;
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            string(false)
                .min_length(Some(1))
                .max_length(Some(64))
                .pattern(Some(
                    r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$",
                )),
        )
        .max_items(Some(50))
        .build()
}

/// A journaled note (`reason`): letters, digits, spaces and `_-.:#/`, at most 64, no run of
/// 7 or more digits; empty or null is none.
pub const NOTE: &str = r"^(?![^0-9]*([0-9]+[^0-9]+)*[0-9]{7})[A-Za-z0-9 _\-.:#/]{0,64}$";

pub fn note() -> Object {
    string(true).pattern(Some(NOTE)).build()
}

/// A legal hold's reason: a note that is not blank.
pub fn hold_reason() -> Object {
    string(false)
        .pattern(Some(
            r"^(?![^0-9]*([0-9]+[^0-9]+)*[0-9]{7})(?=.*[A-Za-z0-9_\-.:#/])[A-Za-z0-9 _\-.:#/]{1,64}$",
        ))
        .build()
}

/// Text that is not blank, on one line, of at most `max` bytes (ASCII: one byte a character).
fn text(max: usize, multiline: bool, nullable: bool) -> Object {
    let (allowed, visible) = if multiline {
        (
            r"[^\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]",
            r"[^\s\u0000-\u001f\u007f-\u009f]",
        )
    } else {
        (
            r"[^\u0000-\u001f\u007f-\u009f]",
            r"[^\s\u0000-\u001f\u007f-\u009f]",
        )
    };
    string(nullable)
        .min_length(Some(1))
        .max_length(Some(max))
        .pattern(Some(format!("^{allowed}*{visible}{allowed}*$")))
        .build()
}

/// A notice's text: 1 to 16 KiB, not blank, no control characters but tab and line breaks.
pub fn notice_text() -> Object {
    text(16 * 1024, true, false)
}

/// A recipient's name: 1 to 200 bytes on one line, not blank.
pub fn recipient_name() -> Object {
    text(200, false, false)
}

pub fn recipient_name_optional() -> Object {
    text(200, false, true)
}

/// A webhook URL: `https://` to a host name, or `http://` to a loopback address, then a
/// path and query of printable ASCII without `#`; at most 2048 bytes. The server also takes `https://` to a public IP literal, and refuses a name
/// that resolves to a non-public address (`address_not_allowed`), which no pattern says.
pub fn recipient_url(nullable: bool) -> Object {
    const OCTET: &str = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    const PORT: &str = "(:([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?";
    const NAME: &str = "((?!xn--)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\\.)+[A-Za-z]{2,63}";
    string(nullable)
        .max_length(Some(2048))
        .pattern(Some(format!(
            "^(https://{NAME}{PORT}|http://(127\\.{OCTET}\\.{OCTET}\\.{OCTET}|localhost|\\[::1\\]){PORT})([/?][!-\"$-~]*)?$"
        )))
        .build()
}

/// A Twilio Account SID: `AC` and 32 hex digits; null removes it.
pub fn twilio_account_sid() -> Object {
    string(true).pattern(Some("^AC[0-9a-fA-F]{32}$")).build()
}

/// A recording's bytes: at least one.
pub fn audio() -> Object {
    use utoipa::openapi::schema::{KnownFormat, SchemaFormat};
    string(false)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
        .min_length(Some(1))
        .build()
}

pub fn recipient_url_required() -> Object {
    recipient_url(false)
}

pub fn recipient_url_optional() -> Object {
    recipient_url(true)
}

/// A signing secret: 16 to 512 bytes, no control characters.
pub fn secret(nullable: bool) -> Object {
    string(nullable)
        .min_length(Some(16))
        .max_length(Some(512))
        .pattern(Some(ONE_LINE))
        .build()
}

pub fn secret_required() -> Object {
    secret(false)
}

pub fn secret_optional() -> Object {
    secret(true)
}

/// The events a recipient takes: at least one.
pub fn events(nullable: bool) -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::ArrayBuilder;
    let kinds = one_of(
        &[
            "call.created",
            "call.redacted",
            "caller.erased",
            "consent.withdrawn",
        ],
        false,
    );
    let builder = if nullable {
        ArrayBuilder::new().schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
    } else {
        ArrayBuilder::new()
    };
    builder.items(kinds).min_items(Some(1)).build()
}

pub fn events_required() -> utoipa::openapi::schema::Array {
    events(false)
}

pub fn events_optional() -> utoipa::openapi::schema::Array {
    events(true)
}

/// `account` or `agency`; null is the account.
pub fn redaction_scope() -> Object {
    one_of(&["account", "agency"], true)
}

/// `off`, `announce` or `opt_in`; null leaves it.
pub fn recording_mode() -> Object {
    one_of(&["off", "announce", "opt_in"], true)
}

/// `drop`, `truncate` or `full`; null leaves it.
pub fn visitor_ip() -> Object {
    one_of(&["drop", "truncate", "full"], true)
}

/// `everyone` or `gdpr`; null leaves it.
pub fn auto_redact_scope() -> Object {
    one_of(&["everyone", "gdpr"], true)
}

/// The account's Twilio auth token: 1 to 256 bytes, not blank, no control characters;
/// null removes it.
pub fn twilio_auth_token() -> Object {
    text(256, false, true)
}

/// Days per personal data category (1 to 3650); null leaves the schedule.
pub fn category_days() -> Object {
    let days = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(3650))
    };
    let mut builder = ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ));
    for category in CONSENT_CATEGORIES {
        builder = builder.property(*category, days());
    }
    builder.build()
}

/// A visitor id naming a consent's subject: 1 to 128 bytes on one line, not blank.
pub fn visitor_id() -> Object {
    text(128, false, true)
}

pub fn instant() -> Object {
    string(false).pattern(Some(INSTANT)).build()
}

/// A visitor's IP address: IPv4 or IPv6; empty or null is none.
pub fn ip_address() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AnyOfBuilder, KnownFormat, Schema, SchemaFormat};
    let format = |known| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(known)))
    };
    let any = AnyOfBuilder::new()
        .item(format(KnownFormat::Ipv4))
        .item(format(KnownFormat::Ipv6))
        .item(string(false).max_length(Some(0)))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build();
    Schema::AnyOf(any)
}

/// A consent's subject: a caller's E.164 number or a visitor id, exactly one of them.
pub fn consent_subject() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{AdditionalProperties, OneOfBuilder, Schema};
    let null = || ObjectBuilder::new().schema_type(Type::Null);
    let subject = |name: &str, other: &str, value: Object| {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(name, value)
            .property(other, null())
            .required(name)
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
    };
    let one = OneOfBuilder::new()
        .item(subject("caller_number", "visitor_id", e164()))
        .item(subject("visitor_id", "caller_number", text(128, false, false)))
        .description(Some(
            "who the consent is about: a caller by `caller_number` (E.164), or a web visitor by the site's `visitor_id` for a withheld number",
        ))
        .build();
    Schema::OneOf(one)
}

/// A user's role (`ingest` is for tokens only); null leaves it.
pub fn user_role() -> Object {
    one_of(&["admin", "agency_admin", "account_admin", "analyst"], true)
}
