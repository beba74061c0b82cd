//! JSON request bodies: content type, size limit, and deserialisation errors that name the
//! field and the rule but never echo the value (it may be personal data).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Code, ErrorDetail};

/// A JSON body parsed into `T`.
pub struct JsonBody<T>(pub T);

pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if !is_json(content_type.as_deref()) {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "send the body as JSON with `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Code::PayloadTooLarge,
                    "request body larger than this route accepts",
                )
            } else {
                ApiError::new(Code::InvalidJson, "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON into `T` with errors fit for a client. Every body is a JSON object: serde
/// would also fill a struct from an array of its fields in order (`[null, false]`), which
/// no client means.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let message = "must be a JSON object, not an array".to_owned();
        let mut err = ApiError::new(Code::InvalidField, format!("body: {message}"));
        err.details.push(ErrorDetail {
            field: "body".into(),
            code: Code::InvalidField.as_str().to_owned(),
            message,
        });
        return Err(err);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(v) => v,
        Err(e)
            if e.inner()
                .to_string()
                .starts_with("invalid type: floating point") =>
        {
            return parse_integral_floats(bytes);
        }
        Err(e) => return Err(describe(e)),
    };
    de.end().map_err(|e| {
        ApiError::new(
            Code::InvalidJson,
            format!(
                "malformed JSON: trailing characters at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })?;
    Ok(value)
}

/// JSON has one number type and JSON Schema counts `211.0` as an integer, so an integral
/// float is taken wherever a whole number is. Only bodies that need it take this slower
/// path: parsed to a value, such floats turned into integers, then read again.
fn parse_integral_floats<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    fn integral(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => {
                if let Some(f) = n.as_f64()
                    && f.fract() == 0.0
                    && f.abs() < 9_007_199_254_740_992.0
                {
                    // Exact: below 2^53 every whole f64 is an exact i64.
                    *value = serde_json::Value::from(f as i64);
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(integral),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(integral),
            _ => {}
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            Code::InvalidJson,
            format!("malformed JSON at line {} column {}", e.line(), e.column()),
        )
    })?;
    integral(&mut value);
    serde_path_to_error::deserialize(value).map_err(describe)
}

fn describe(e: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if inner.is_syntax() || inner.is_eof() || inner.is_io() {
        return ApiError::new(
            Code::InvalidJson,
            format!(
                "malformed JSON at line {} column {}",
                inner.line(),
                inner.column()
            ),
        );
    }
    let raw = inner.to_string();
    let raw = raw.split(" at line ").next().unwrap_or("").to_owned();
    let (code, message, field) = classify(&raw, &path);
    let mut err = ApiError::new(code, format!("{field}: {message}"));
    err.details.push(ErrorDetail {
        field,
        code: code.as_str().to_owned(),
        message,
    });
    err
}

/// Serde's own messages quote the offending value; keep only the rule.
fn classify(raw: &str, path: &str) -> (Code, String, String) {
    let named = |prefix: &str| {
        raw.strip_prefix(prefix)
            .and_then(|r| r.split('`').nth(1))
            .map(str::to_owned)
    };
    // The path of an unknown field already ends with it; that of a missing one does not.
    let join = |name: &str| {
        if path == "." || path.is_empty() {
            name.to_owned()
        } else if path == name || path.ends_with(&format!(".{name}")) {
            path.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    if let Some(name) = named("unknown field") {
        return (
            Code::UnknownField,
            "unknown field (check the spelling against /openapi.json)".into(),
            join(&name),
        );
    }
    if let Some(name) = named("missing field") {
        return (
            Code::MissingField,
            "required field is missing".into(),
            join(&name),
        );
    }
    let field = if path == "." {
        "body".to_owned()
    } else {
        path.to_owned()
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if raw.starts_with(prefix) {
            let expected = raw.split(", expected ").nth(1).unwrap_or("another value");
            let kind = prefix.trim_end_matches(": ");
            return (
                Code::InvalidField,
                format!("{kind}, expected {expected}"),
                field,
            );
        }
    }
    if raw.starts_with("invalid length") {
        return (Code::InvalidField, "invalid length".into(), field);
    }
    (Code::InvalidField, "invalid value".into(), field)
}

/// Objects only, for the structs nested in a body: serde would fill a struct from an array
/// of its fields in order (`"telephony": [null, null]`). Use with `deserialize_with` on an
/// `Option<Struct>` field ([`optional_object`]), a `Struct` field ([`object`]) or a
/// `Vec<Struct>` / `Option<Vec<Struct>>` field ([`objects`], [`optional_objects`]).
pub mod objects_only {
    use std::fmt;
    use std::marker::PhantomData;

    use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
    use serde::{Deserialize, forward_to_deserialize_any};

    /// A deserializer that reads a struct only from a JSON object.
    struct ObjectOnly<D>(D);

    impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectOnly<D> {
        type Error = D::Error;

        fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.deserialize_any(visitor)
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            _fields: &'static [&'static str],
            visitor: V,
        ) -> Result<V::Value, D::Error> {
            self.0.deserialize_map(visitor)
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    struct Seed<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for Seed<T> {
        type Value = T;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            T::deserialize(ObjectOnly(d))
        }
    }

    struct Optional<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for Optional<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            T::deserialize(ObjectOnly(d)).map(Some)
        }
    }

    struct List<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for List<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(item) = seq.next_element_seed(Seed(PhantomData))? {
                out.push(item);
            }
            Ok(out)
        }
    }

    struct OptionalList<T>(PhantomData<T>);

    impl<'de, T: Deserialize<'de>> Visitor<'de> for OptionalList<T> {
        type Value = Option<Vec<T>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of objects or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(List(PhantomData)).map(Some)
        }
    }

    pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
        T::deserialize(ObjectOnly(d))
    }

    pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        d.deserialize_option(Optional(PhantomData))
    }

    pub fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(List(PhantomData))
    }

    pub fn optional_objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Vec<T>>, D::Error> {
        d.deserialize_option(OptionalList(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_written_as_floats_are_taken_and_fractions_are_not() {
        let probe: Probe = parse_json(br#"{"number": "x", "count": 211.0}"#).unwrap();
        assert_eq!(probe.count, Some(211));
        for bad in [
            &br#"{"number": "x", "count": 211.5}"#[..],
            br#"{"number": "x", "count": -1.0}"#,
            br#"{"number": "x", "count": 1e300}"#,
        ] {
            let err = parse_json::<Probe>(bad).unwrap_err();
            assert_eq!(
                err.code,
                Code::InvalidField,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(err.details[0].field, "count");
        }
        let err = parse_json::<Probe>(br#"{"number": "x", "count": 2.0, "extra": 1}"#).unwrap_err();
        assert_eq!(err.code, Code::UnknownField);
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        number: String,
        count: Option<u32>,
        inner: Option<Vec<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        #[serde(default, deserialize_with = "objects_only::optional_object")]
        one: Option<Inner>,
        #[serde(default, deserialize_with = "objects_only::optional_objects")]
        many: Option<Vec<Inner>>,
    }

    #[test]
    fn nested_structs_are_read_from_objects_only() {
        let ok: Nested =
            parse_json(br#"{"one": {"ip": "a"}, "many": [{"ip": "b"}, {"ip": "c"}]}"#).unwrap();
        assert_eq!(ok.many.map(|m| m.len()), Some(2));
        assert!(ok.one.is_some());
        let absent: Nested = parse_json(br#"{"one": null}"#).unwrap();
        assert!(absent.one.is_none() && absent.many.is_none());
        for (body, field) in [
            (r#"{"one": ["a"]}"#, "one"),
            (r#"{"many": [{"ip": "b"}, ["c"]]}"#, "many[1]"),
        ] {
            let err = parse_json::<Nested>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, Code::InvalidField, "{body}");
            assert_eq!(err.details[0].field, field, "{body}");
        }
        // Errors inside a nested object keep their path.
        let err = parse_json::<Nested>(br#"{"many": [{"ip": 5}]}"#).unwrap_err();
        assert_eq!(err.details[0].field, "many[0].ip");
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        ip: String,
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let cases: [(&str, Code, &str); 6] = [
            (
                r#"{"number": "+442079460123", "count": "SECRET-VALUE"}"#,
                Code::InvalidField,
                "count",
            ),
            (r#"{"number": 442079460123}"#, Code::InvalidField, "number"),
            (r#"{"count": 3}"#, Code::MissingField, "number"),
            (
                r#"{"number": "x", "SECRET-KEY-NAME": 1}"#,
                Code::UnknownField,
                "SECRET-KEY-NAME",
            ),
            (
                r#"{"number": "x", "inner": [{"ip": "a"}, {"ip": 5}]}"#,
                Code::InvalidField,
                "inner[1].ip",
            ),
            (
                r#"{"number": "x", "count": -5}"#,
                Code::InvalidField,
                "count",
            ),
        ];
        for (body, code, field) in cases {
            let err = parse_json::<Probe>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, code, "{body}");
            assert_eq!(err.details[0].field, field, "{body}");
            assert!(
                !err.message.contains("SECRET-VALUE") && !err.message.contains("442079460123"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn an_array_is_refused_where_an_object_is_expected() {
        for body in ["[\"x\", null, null]", "  [\"x\"]", "\n[]"] {
            let err = parse_json::<Probe>(body.as_bytes()).unwrap_err();
            assert_eq!(err.code, Code::InvalidField, "{body}");
            assert_eq!(err.details[0].field, "body", "{body}");
        }
        assert!(parse_json::<Probe>(br#" {"number": "x"}"#).is_ok());
    }

    #[test]
    fn malformed_json_is_a_400() {
        for body in [
            "",
            "{",
            "{\"number\": \"x\"} trailing",
            "nul",
            "{\"number\": \"x",
        ] {
            assert_eq!(
                parse_json::<Probe>(body.as_bytes()).unwrap_err().code,
                Code::InvalidJson,
                "{body}"
            );
        }
    }

    #[test]
    fn json_content_types_are_recognised() {
        for (ct, ok) in [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("application/vnd.x+json"), true),
            (Some("text/plain"), false),
            (None, false),
        ] {
            assert_eq!(is_json(ct), ok, "{ct:?}");
        }
    }
}
