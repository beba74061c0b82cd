//! Words for people: counts with the right plural.

/// `1 call`, `2 calls`, `0 calls`.
pub fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        for (n, text) in [(0, "0 accounts"), (1, "1 account"), (2, "2 accounts")] {
            assert_eq!(super::counted(n, "account", "accounts"), text);
        }
    }
}
