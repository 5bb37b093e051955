//! Files the lab writes, and its clock: the leaves of the lab's module graph (they use nothing
//! else of the lab), so that the state, the TLS material and the processes can all use them.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};

/// Now, RFC 3339 in UTC, as the state file and deployments record times.
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC date always formats as RFC 3339")
}

/// Write a file atomically with the given mode.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, contents, mode)?;
    std::fs::rename(&tmp, path).ctx(|| format!("replacing {}", path.display()))
}

/// Write `contents` to `path` (created with `mode`) and flush it to disk.
pub(crate) fn write_synced(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .ctx(|| format!("writing {}", path.display()))?;
    f.write_all(contents)
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", path.display()))
}
