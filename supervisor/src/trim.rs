//! Gives back the pages of start-up code once the supervisor is in its event loop.
//!
//! PID 1 lives as long as the container, but most of its code (argument and config
//! parsing, TOML, error reporting) runs once. The kernel maps executable pages in 64 KiB
//! batches on each fault, so after start-up most of the binary's text stays mapped and
//! counts in the process's RSS and PSS forever. `MADV_DONTNEED` on the text mapping drops
//! those page-table entries (the file pages stay in the page cache); the loop's own code
//! faults back in on its next use. Nothing is lost: text is read-only and file-backed.

/// Drops this process's mapped executable text pages.
pub fn release_startup_text() {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    let exe = exe.to_string_lossy().into_owned();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = line.split_whitespace().nth(5).unwrap_or("");
        if perms != "r-xp" || path != exe {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: the range is our own read-only, private, file-backed text mapping;
        // MADV_DONTNEED only drops its page-table entries, and any later access
        // re-reads the identical pages from the file.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
        }
    }
}
