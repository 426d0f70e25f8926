//! Memory hints for large buffers that are about to be written in full.

use std::mem::MaybeUninit;

/// Asks the OS to back the whole pages of `buf` with memory now, in one request, instead of one
/// page fault per page as the buffer is first written (Linux 5.14+, `MADV_POPULATE_WRITE`).
/// Loading a model writes hundreds of megabytes of fresh memory (weights, packed copies), and
/// the per-page faults are a large part of its time. A hint only: it changes no contents, and
/// where the request is not supported nothing happens.
pub fn prefault<T>(buf: &mut [MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        // Smaller buffers are faulted in page by page as they are written: asking first costs
        // more than it saves.
        const MIN_BYTES: usize = 256 * 1024;
        let bytes = std::mem::size_of_val(buf);
        if bytes < MIN_BYTES {
            return;
        }
        let addr = buf.as_mut_ptr() as usize;
        let start = addr.div_ceil(PAGE) * PAGE;
        let end = (addr + bytes) / PAGE * PAGE;
        if end > start {
            // SAFETY: [start, end) are whole pages inside `buf`, which this call borrows
            // mutably; MADV_POPULATE_WRITE only maps them (writing nothing a read could see
            // that was not already there: fresh pages are zero, mapped ones are left as they are).
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

#[cfg(test)]
mod tests {
    use super::prefault;

    #[test]
    fn prefault_keeps_contents() {
        // Written memory keeps its bytes (the hint must not drop or zero pages).
        let mut v: Vec<u32> = (0..1_000_003u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
        // SAFETY: MaybeUninit<u32> has u32's layout; the view only lives for the call.
        let view = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<std::mem::MaybeUninit<u32>>(), v.len()) };
        prefault(view);
        assert!(v.iter().enumerate().all(|(i, &x)| x == (i as u32).wrapping_mul(2_654_435_761)));
        // Fresh capacity: prefaulted, then written and read back.
        let mut w: Vec<u64> = Vec::with_capacity(300_001);
        prefault(w.spare_capacity_mut());
        w.extend((0..300_001u64).map(|i| i ^ 0x5555));
        assert!(w.iter().enumerate().all(|(i, &x)| x == i as u64 ^ 0x5555));
        // Small and empty buffers are left alone.
        prefault::<u8>(&mut []);
    }
}
