//! Gives back memory once the supervisor is in its event loop: the pages of start-up code
//! and the heap's free pages.
//!
//! PID 1 lives as long as the container, but most of its code (argument and config
//! parsing, TOML, error reporting) runs once. The kernel maps executable pages in 64 KiB
//! batches on each fault, so after start-up most of the binary's text stays mapped and
//! counts in the process's RSS and PSS forever. `MADV_DONTNEED` on the text mapping drops
//! those page-table entries (the file pages stay in the page cache); the loop's own code
//! faults back in on its next use. Nothing is lost: text is read-only and file-backed.
//! The loop calls this when the core says so ([`crate::core::TRIM_AFTER`] after start and
//! again after each burst of activity: a request, a restart), so an idle container keeps
//! only what idling uses.

/// Drops this process's mapped executable text and read-only data pages, and gives the
/// heap's free pages back (`malloc_trim`).
pub fn release_memory() {
    // SAFETY: malloc_trim only returns free memory of glibc's heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
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
        // the text, and the read-only data before it (offset 0: headers, .rodata,
        // .eh_frame, relocations); never the RELRO segment, whose pages the loader wrote
        let offset = line.split_whitespace().nth(2).unwrap_or("");
        let rodata = perms == "r--p" && offset.bytes().all(|c| c == b'0');
        if !(perms == "r-xp" || rodata) || path != exe {
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
