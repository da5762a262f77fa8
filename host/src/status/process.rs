//! The host process's own resource use, read from `/proc/self` on each
//! scrape (Linux; elsewhere the figures are absent rather than wrong).

use std::path::Path;

/// What the process uses right now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU time since start, seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, bytes.
    pub resident_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
}

/// Reads `/proc/self/{stat,statm,fd}`.
pub fn read() -> ProcessStats {
    ProcessStats {
        cpu_seconds: cpu_seconds(),
        resident_bytes: resident_bytes(),
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64),
    }
}

fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may
    // contain spaces: state is field 3, utime 14 and stime 15.
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = rustix::param::clock_ticks_per_second();
    (ticks > 0).then(|| (utime + stime) as f64 / ticks as f64)
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

/// Bytes an unprivileged process may still write on the filesystem that
/// holds `path`.
pub fn free_disk_bytes(path: &Path) -> Option<u64> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let vfs = rustix::fs::statvfs(dir).ok()?;
    Some(vfs.f_bavail.saturating_mul(vfs.f_frsize))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let p = super::read();
        assert!(p.cpu_seconds.is_some());
        assert!(p.resident_bytes.is_some_and(|b| b > 0));
        assert!(p.open_fds.is_some_and(|n| n >= 3));
        assert!(super::free_disk_bytes(std::path::Path::new("/tmp")).is_some());
    }
}
