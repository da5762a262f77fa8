//! Startup code out of the resident set.
//!
//! Why: the executable's code is mapped from the file, and the kernel maps
//! it into the process in 64 KiB runs around each page touched. Starting
//! the host touches code that never runs again (config parsing, loading
//! plugins, opening the buffer, TLS and CLI set-up), scattered over a
//! 10–25 MB text section, so by the time the pipeline runs most of the
//! file's code is resident though little of it is used. Once the host is
//! running it asks the kernel to unmap its executable's pages from this
//! process (`MADV_DONTNEED`): they stay in the page cache (clean, shared,
//! reclaimable), and the ones the pipeline uses come back on the next
//! touch with a minor fault, once. Nothing is written: the executable's
//! mappings are read-only, so no data can be lost.

/// Unmaps the pages of this process's executable that are mapped from the
/// file and never written (code and read-only data). Returns the bytes
/// advised. Elsewhere than Linux it does nothing.
pub fn drop_executable_pages() -> u64 {
    #[cfg(target_os = "linux")]
    {
        linux::drop_executable_pages().unwrap_or(0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        0
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::path::Path;

    pub(super) fn drop_executable_pages() -> Option<u64> {
        let exe = std::fs::read_link("/proc/self/exe").ok()?;
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut advised = 0u64;
        for (start, end) in unwritten_mappings_of(&smaps, &exe) {
            let len = end.saturating_sub(start);
            // SAFETY: the range is a whole mapping of this process's own
            // executable, private, not writable and with no page ever
            // written (no anonymous copy: relocated read-only data, which
            // was written before it was made read-only, is skipped), so
            // dropping its page-table entries only makes the next access
            // fault the same file page back in. No memory that Rust code
            // owns is freed.
            let done = unsafe {
                rustix::mm::madvise(start as *mut _, len, rustix::mm::Advice::LinuxDontNeed)
            };
            if done.is_ok() {
                advised += len as u64;
            }
        }
        Some(advised)
    }

    /// The mappings of `exe` in `smaps` that are private, not writable and
    /// hold no written (anonymous) page.
    pub(super) fn unwritten_mappings_of(smaps: &str, exe: &Path) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut current: Option<(usize, usize)> = None;
        for line in smaps.lines() {
            if let Some((start, end, perms, path)) = parse(line) {
                // Private, never writable: `r-xp` code and `r--p` data.
                let candidate = perms.as_bytes().get(1) == Some(&b'-')
                    && perms.ends_with('p')
                    && Path::new(path) == exe;
                current = candidate.then_some((start, end));
            } else if let Some(kb) = line.strip_prefix("Anonymous:") {
                let written = kb.trim().trim_end_matches("kB").trim() != "0";
                if let Some(range) = current.take()
                    && !written
                {
                    out.push(range);
                }
            }
        }
        out
    }

    /// A mapping's header line, `start-end perms offset dev inode path`, as
    /// (start, end, perms, path); `None` for the other lines of smaps.
    fn parse(line: &str) -> Option<(usize, usize, &str, &str)> {
        let mut parts = line.splitn(6, ' ');
        let (start, end) = parts.next()?.split_once('-')?;
        let start = usize::from_str_radix(start, 16).ok()?;
        let end = usize::from_str_radix(end, 16).ok()?;
        let perms = parts.next()?;
        let path = parts.nth(3).unwrap_or_default().trim_start();
        Some((start, end, perms, path))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn only_the_executables_unwritten_read_only_mappings_are_chosen() {
        let smaps = "\
5600-5700 r--p 00000000 fe:00 42   /opt/halyard/bin/halyard
Anonymous:             0 kB
5700-5900 r-xp 00100000 fe:00 42   /opt/halyard/bin/halyard
Size:                8 kB
Anonymous:             0 kB
5900-5a00 r--p 00300000 fe:00 42   /opt/halyard/bin/halyard
Anonymous:             4 kB
5a00-5b00 rw-p 00400000 fe:00 42   /opt/halyard/bin/halyard
Anonymous:             0 kB
6000-6100 r-xp 00000000 fe:00 7    /usr/lib/libc.so.6
Anonymous:             0 kB
7000-7100 r--s 00000000 fe:00 42   /opt/halyard/bin/halyard
Anonymous:             0 kB
8000-8100 rw-p 00000000 00:00 0
Anonymous:             4 kB
";
        let chosen =
            linux::unwritten_mappings_of(smaps, std::path::Path::new("/opt/halyard/bin/halyard"));
        // Not the relocated (written) read-only data, the writable data,
        // another file, a shared mapping or anonymous memory.
        assert_eq!(chosen, [(0x5600, 0x5700), (0x5700, 0x5900)]);
    }

    #[test]
    fn dropping_the_pages_leaves_the_process_running() {
        let advised = drop_executable_pages();
        assert!(
            advised > 0,
            "the test binary's code is mapped from its file"
        );
        // Code and constants come back on use.
        let text = format!("{:?}", (1..5).map(|i| i * 3).collect::<Vec<_>>());
        assert_eq!(text, "[3, 6, 9, 12]");
    }
}
