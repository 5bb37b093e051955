//! Prepared statements' parameter types: what an EXECUTE sent last, recorded so that a
//! statement re-prepared on a new backend gets them again.

use super::Stmt;

/// Record the parameter types of an EXECUTE, or put the last ones back in when the statement
/// was re-prepared on a backend that never saw them. Returns a rewritten payload if needed.
pub(super) fn execute_types(payload: &[u8], s: &mut Stmt, single: bool) -> Option<Vec<u8>> {
    if s.params == 0 || !single {
        return None;
    }
    let n = s.params as usize;
    let flag_at = 10 + n.div_ceil(8);
    let flag = *payload.get(flag_at)?;
    if flag == 1 {
        s.types = payload
            .get(flag_at + 1..flag_at + 1 + 2 * n)
            .map(|t| t.to_vec());
        s.needs_types = false;
        return None;
    }
    if s.needs_types {
        let types = s.types.as_ref()?;
        let mut p = Vec::with_capacity(payload.len() + types.len());
        p.extend_from_slice(&payload[..flag_at]);
        p.push(1);
        p.extend_from_slice(types);
        p.extend_from_slice(&payload[flag_at + 1..]);
        s.needs_types = false;
        return Some(p);
    }
    None
}

/// The same for a COM_STMT_BULK_EXECUTE: its types (2 bytes per parameter, as EXECUTE's)
/// follow the flags when STMT_BULK_FLAG_CLIENT_SEND_TYPES (128) is set.
pub(super) fn bulk_types(payload: &[u8], s: &mut Stmt, single: bool) -> Option<Vec<u8>> {
    const SEND_TYPES: u16 = 128;
    if s.params == 0 || !single {
        return None;
    }
    let n = s.params as usize;
    let flags = u16::from_le_bytes([*payload.get(5)?, *payload.get(6)?]);
    if flags & SEND_TYPES != 0 {
        s.types = payload.get(7..7 + 2 * n).map(|t| t.to_vec());
        s.needs_types = false;
        return None;
    }
    if s.needs_types {
        let types = s.types.as_ref()?;
        let mut p = Vec::with_capacity(payload.len() + types.len());
        p.extend_from_slice(&payload[..5]);
        p.extend_from_slice(&(flags | SEND_TYPES).to_le_bytes());
        p.extend_from_slice(types);
        p.extend_from_slice(&payload[7..]);
        s.needs_types = false;
        return Some(p);
    }
    None
}
