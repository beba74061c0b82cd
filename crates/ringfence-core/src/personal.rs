//! A wrapper for personal data held in memory.
//!
//! `Personal<T>` prints as `‹personal›` in `Debug` and has no `Display`, so a stray
//! debug formatting of a call in a log line cannot leak a name or a transcript. The value is zeroized on drop.

use std::fmt;

use zeroize::Zeroize;

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Personal<T: Zeroize>(T);

impl<T: Zeroize> Personal<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The value itself. Call only where the value is sealed, shown to an authorised
    /// reader, or compared; never to log.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> Drop for Personal<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("‹personal›")
    }
}

impl From<String> for Personal<String> {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Personal<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_value() {
        let name = Personal::new("Erika Mustermann".to_owned());
        let shown = format!("{name:?} {:?}", Some(&name));
        assert!(!shown.contains("Erika"), "{shown}");
        assert_eq!(name.expose(), "Erika Mustermann");
    }
}
