//! The Ringfence domain: the data map, calls and visitor sessions, phone numbers and
//! jurisdiction, roles and the rules of who may see what.
//!
//! This crate is pure. It never does IO, never knows about the wire format or a database,
//! and cannot fail on either. Types that hold personal data print masked in `Debug`.

pub mod access;
pub mod call;
pub mod checklist;
pub mod collection;
pub mod consent;
pub mod datamap;
pub mod ids;
pub mod jurisdiction;
pub mod net;
pub mod personal;
pub mod phone;
pub mod recipients;
pub mod retention;
pub mod text;
pub mod throttle;
pub mod timestamp;

pub use datamap::{DataCategory, RedactionEffect};
pub use ids::{
    AccountId, AgencyId, CallId, DeliveryId, EventId, RecipientId, SessionId, TokenId, UserId,
};
pub use personal::Personal;
pub use phone::E164;
