//! Global transaction identifiers of both families, which look alike and mean different things.
//!
//! - [`mysql`]: a MySQL GTID is `uuid:gno` (8.4 adds `uuid:tag:gno`), and `gtid_executed` is a
//!   true *set* of them, so union, subset and difference are exact, and the errant transactions
//!   of a replica are simply `replica - source`.
//! - [`mariadb`]: a MariaDB GTID is `domain-server_id-seq`. What the server reports
//!   (`gtid_slave_pos`, `gtid_binlog_pos`, `Gtid_IO_Pos`, ...) is a *position*, not a set: see
//!   that module.
//!
//! Both are parsed strictly (a malformed text is an error, never a silently smaller set) and
//! printed canonically. This module is pure: it never talks to a server.

/// Serialize and deserialize a type as its `Display` / `FromStr` text, the form operators read
/// and servers accept.
macro_rules! serde_as_string {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                serializer: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(
                deserializer: D,
            ) -> std::result::Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Pure digits, no sign, no blank: `str::parse` alone would accept `+5`.
fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub mod mariadb;
pub mod mysql;

#[cfg(test)]
mod tests;
