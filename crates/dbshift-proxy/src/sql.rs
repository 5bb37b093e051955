//! A glance at statement text for the session state that OK packets do not report: temporary
//! tables, `GET_LOCK`, `LOCK TABLES`, user variables. It reads keywords, never parses SQL, and
//! errs on the side of "this session has state" (see docs/proxy.md for what it misses).

/// What one statement may do to the session beyond what the server's tracker reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Effects {
    pub temp_tables_created: u32,
    /// Temporary tables named by `DROP TEMPORARY TABLE`.
    pub temp_tables_dropped: u32,
    pub locks_taken: u32,
    pub locks_released: u32,
    pub all_locks_released: bool,
    pub lock_tables: bool,
    pub unlock_tables: bool,
    pub user_variables: bool,
}

impl Effects {
    pub fn is_none(&self) -> bool {
        *self == Effects::default()
    }
}

fn skip_blank_and_comments(s: &[u8]) -> &[u8] {
    let mut s = s;
    loop {
        let before = s.len();
        while let Some((c, rest)) = s.split_first() {
            if c.is_ascii_whitespace() || *c == b'(' {
                s = rest;
            } else {
                break;
            }
        }
        if s.starts_with(b"/*") {
            s = match s.windows(2).position(|w| w == b"*/") {
                Some(i) => &s[i + 2..],
                None => &[],
            };
        } else if s.starts_with(b"-- ") || s.starts_with(b"#") {
            s = match s.iter().position(|&c| c == b'\n') {
                Some(i) => &s[i + 1..],
                None => &[],
            };
        }
        if s.len() == before {
            return s;
        }
    }
}

fn starts_with_word(s: &[u8], word: &[u8]) -> bool {
    s.len() >= word.len()
        && s[..word.len()].eq_ignore_ascii_case(word)
        && s.get(word.len())
            .is_none_or(|c| !c.is_ascii_alphanumeric() && *c != b'_')
}

fn next_word(s: &[u8]) -> &[u8] {
    let s = skip_blank_and_comments(s);
    let end = s
        .iter()
        .position(|c| !c.is_ascii_alphanumeric() && *c != b'_')
        .unwrap_or(s.len());
    &s[end..]
}

/// A `KILL [HARD | SOFT] [CONNECTION | QUERY] <thread id>` statement (MariaDB's syntax): the
/// id and where its digits are in the text. `KILL QUERY ID <query id>`, `KILL USER` and any
/// id that is not a plain number are not this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub id: u64,
    pub digits: std::ops::Range<usize>,
}

/// The thread id a statement kills, if it is a `KILL` of one (see [`Kill`]).
pub fn kill_target(sql: &[u8]) -> Option<Kill> {
    let head = skip_blank_and_comments(sql);
    if !starts_with_word(head, b"KILL") {
        return None;
    }
    let mut rest = skip_blank_and_comments(next_word(head));
    if starts_with_word(rest, b"HARD") || starts_with_word(rest, b"SOFT") {
        rest = skip_blank_and_comments(next_word(rest));
    }
    if starts_with_word(rest, b"CONNECTION") {
        rest = skip_blank_and_comments(next_word(rest));
    } else if starts_with_word(rest, b"QUERY") {
        rest = skip_blank_and_comments(next_word(rest));
        if starts_with_word(rest, b"ID") {
            return None;
        }
    }
    let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let id = std::str::from_utf8(&rest[..n]).ok()?.parse().ok()?;
    let after = &rest[n..];
    let tail = after.iter().all(|c| c.is_ascii_whitespace() || *c == b';');
    if !tail {
        return None;
    }
    let start = sql.len() - rest.len();
    Some(Kill {
        id,
        digits: start..start + n,
    })
}

/// The effects of one statement text (the first statement of a multi-statement for the
/// keyword checks; function calls and user variables anywhere).
pub fn effects(sql: &[u8]) -> Effects {
    let mut e = Effects::default();
    let head = skip_blank_and_comments(sql);
    if starts_with_word(head, b"CREATE") {
        let mut rest = skip_blank_and_comments(next_word(head));
        if starts_with_word(rest, b"OR") {
            // OR REPLACE
            rest = skip_blank_and_comments(next_word(skip_blank_and_comments(next_word(rest))));
        }
        if starts_with_word(rest, b"TEMPORARY") {
            e.temp_tables_created = 1;
        }
    } else if starts_with_word(head, b"DROP") {
        let rest = skip_blank_and_comments(next_word(head));
        if starts_with_word(rest, b"TEMPORARY") {
            let stmt_end = rest.iter().position(|&c| c == b';').unwrap_or(rest.len());
            e.temp_tables_dropped =
                1 + rest[..stmt_end].iter().filter(|&&c| c == b',').count() as u32;
        }
    } else if starts_with_word(head, b"LOCK") {
        e.lock_tables = true;
    } else if starts_with_word(head, b"UNLOCK") {
        e.unlock_tables = true;
    }
    // Function calls: look just before each '('.
    let mut i = 0;
    while let Some(off) = sql[i..].iter().position(|&c| c == b'(' || c == b'@') {
        let at = i + off;
        if sql[at] == b'@' {
            let double = sql.get(at + 1) == Some(&b'@') || (at > 0 && sql[at - 1] == b'@');
            if !double {
                e.user_variables = true;
            }
        } else {
            let before = &sql[..at];
            let before = before.trim_ascii_end();
            let ends = |w: &[u8]| {
                before.len() >= w.len() && before[before.len() - w.len()..].eq_ignore_ascii_case(w)
            };
            if ends(b"RELEASE_ALL_LOCKS") {
                e.all_locks_released = true;
            } else if ends(b"RELEASE_LOCK") {
                e.locks_released += 1;
            } else if ends(b"GET_LOCK") {
                e.locks_taken += 1;
            }
        }
        i = at + 1;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_tables() {
        assert_eq!(
            effects(b"  create temporary table t (a int)").temp_tables_created,
            1
        );
        assert_eq!(
            effects(b"/* x */ CREATE OR REPLACE TEMPORARY TABLE t (a int)").temp_tables_created,
            1
        );
        assert_eq!(effects(b"CREATE TABLE t (a int)").temp_tables_created, 0);
        assert_eq!(effects(b"DROP TEMPORARY TABLE a, b").temp_tables_dropped, 2);
    }

    #[test]
    fn locks_and_variables() {
        let e = effects(b"SELECT GET_LOCK('a', 1), get_lock ('b',1)");
        assert_eq!(e.locks_taken, 2);
        assert!(effects(b"DO RELEASE_ALL_LOCKS()").all_locks_released);
        assert_eq!(effects(b"SELECT RELEASE_LOCK('a')").locks_released, 1);
        assert!(effects(b"SET @x := 5").user_variables);
        assert!(!effects(b"SELECT @@server_id").user_variables);
        assert!(effects(b"LOCK TABLES t WRITE").lock_tables);
        assert!(effects(b"SELECT 1").is_none());
    }

    #[test]
    fn kill_statements_name_their_thread() {
        let k = kill_target(b"KILL QUERY 1073741830").unwrap();
        assert_eq!(k.id, 1073741830);
        assert_eq!(&b"KILL QUERY 1073741830"[k.digits], b"1073741830");
        assert_eq!(kill_target(b"  kill 42;").unwrap().id, 42);
        assert_eq!(kill_target(b"KILL HARD CONNECTION 7").unwrap().id, 7);
        assert_eq!(kill_target(b"/* c */ KILL SOFT QUERY 9 ").unwrap().id, 9);
        assert!(kill_target(b"KILL QUERY ID 5").is_none());
        assert!(kill_target(b"KILL USER app").is_none());
        assert!(kill_target(b"KILL 5 + 1").is_none());
        assert!(kill_target(b"SELECT 'KILL 5'").is_none());
        assert!(kill_target(b"KILLER 5").is_none());
    }
}
