//! The copy every backend but the kernel's ends in: `memcpy`, split over a
//! few threads for large ranges, and run backwards where a forward copy would
//! stall on 4K aliasing.
//!
//! A forward copy whose destination lies a little past its source, modulo
//! the 4 KiB page (a buffer from `malloc`, 16 bytes into its page, filled
//! from page-aligned shared memory), makes every load look as if it depended
//! on the store just issued to the same low address bits: on the machines we
//! measured, glibc's `memcpy` then runs at a third of its speed. Copying that
//! case from the end avoids it.

use std::ops::Range;

/// Distances (destination minus source, modulo 4 KiB) below which a
/// forward copy stalls.
const ALIASING: Range<usize> = 1..512;
/// Copies at least this large are split over threads.
const PARALLEL_FROM: usize = 32 << 20;
/// The most threads one copy takes.
const MOST_THREADS: usize = 4;

/// Copies `len` bytes from `src` to `dst`.
///
/// # Safety
///
/// Both ranges must be valid for `len` bytes (reads from `src`, writes to
/// `dst`) and must not overlap; other processes may write either while it
/// runs (the bytes are plain data).
pub(crate) unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    let threads = if len >= PARALLEL_FROM {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(MOST_THREADS)
    } else {
        1
    };
    if threads == 1 {
        // SAFETY: the caller's guarantee.
        return unsafe { copy_one(src, dst, len) };
    }
    let each = len.div_ceil(threads).next_multiple_of(4096);
    let (src, dst) = (src as usize, dst as usize);
    std::thread::scope(|scope| {
        let mut start = each;
        while start < len {
            let n = each.min(len - start);
            let at = start;
            // SAFETY: each thread copies its own disjoint part of the
            // caller's ranges, and the scope joins them before returning.
            scope.spawn(move || unsafe {
                copy_one((src + at) as *const u8, (dst + at) as *mut u8, n)
            });
            start += each;
        }
        // SAFETY: as above, for the first part, on this thread.
        unsafe { copy_one(src as *const u8, dst as *mut u8, each.min(len)) };
    });
}

/// One thread's copy.
///
/// # Safety
///
/// As for [`copy_bytes`].
unsafe fn copy_one(src: *const u8, dst: *mut u8, len: usize) {
    let distance = (dst as usize).wrapping_sub(src as usize) % 4096;
    if len < 4096 || !ALIASING.contains(&distance) {
        // SAFETY: the caller's guarantee.
        return unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
    }
    if len >= STREAMING_FROM {
        // SAFETY: the caller's guarantee.
        return unsafe { backward_streaming(src, dst, len) };
    }
    // SAFETY: the caller's guarantee.
    unsafe { backward(src, dst, len) }
}

/// Backward copies at least this large bypass the cache (as `memcpy` does
/// for large copies): their destination is not read again soon.
const STREAMING_FROM: usize = 1 << 20;

/// Copies from the end, 64 bytes at a time.
///
/// # Safety
///
/// As for [`copy_bytes`].
unsafe fn backward(src: *const u8, dst: *mut u8, len: usize) {
    const BLOCK: usize = 64;
    let tail = len % BLOCK;
    let body = len - tail;
    // SAFETY: the caller's guarantee covers every byte below `len`; blocks
    // are read and written unaligned.
    unsafe {
        std::ptr::copy_nonoverlapping(src.add(body), dst.add(body), tail);
        let mut at = body;
        while at > 0 {
            at -= BLOCK;
            let block = std::ptr::read_unaligned(src.add(at).cast::<[u64; 8]>());
            std::ptr::write_unaligned(dst.add(at).cast::<[u64; 8]>(), block);
        }
    }
}

/// Copies from the end with non-temporal stores (SSE2, which every x86_64
/// has), 64 bytes at a time into a 16-byte aligned destination.
///
/// # Safety
///
/// As for [`copy_bytes`].
#[cfg(target_arch = "x86_64")]
unsafe fn backward_streaming(src: *const u8, dst: *mut u8, len: usize) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
    // SAFETY: every access lies below `len` bytes of the caller's ranges;
    // stores go to 16-byte aligned addresses (the unaligned head and tail
    // are copied plainly), loads are unaligned; the fence orders the
    // streaming stores before anything after the copy.
    unsafe {
        let tail = (dst as usize + len) % 16;
        let mut at = len - tail;
        std::ptr::copy_nonoverlapping(src.add(at), dst.add(at), tail);
        let head = (16 - dst as usize % 16) % 16;
        while at >= head + 64 {
            at -= 64;
            let a = _mm_loadu_si128(src.add(at).cast::<__m128i>());
            let b = _mm_loadu_si128(src.add(at + 16).cast::<__m128i>());
            let c = _mm_loadu_si128(src.add(at + 32).cast::<__m128i>());
            let d = _mm_loadu_si128(src.add(at + 48).cast::<__m128i>());
            _mm_stream_si128(dst.add(at).cast::<__m128i>(), a);
            _mm_stream_si128(dst.add(at + 16).cast::<__m128i>(), b);
            _mm_stream_si128(dst.add(at + 32).cast::<__m128i>(), c);
            _mm_stream_si128(dst.add(at + 48).cast::<__m128i>(), d);
        }
        _mm_sfence();
        backward(src, dst, at);
    }
}

/// Elsewhere, the plain backward copy.
///
/// # Safety
///
/// As for [`copy_bytes`].
#[cfg(not(target_arch = "x86_64"))]
unsafe fn backward_streaming(src: *const u8, dst: *mut u8, len: usize) {
    // SAFETY: the caller's guarantee.
    unsafe { backward(src, dst, len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_copies_exactly() {
        let src: Vec<u8> = (0..(PARALLEL_FROM + 8192)).map(|i| (i * 7) as u8).collect();
        for (from, to, len) in [
            (0, 0, 100),
            (0, 16, 10_000),
            (16, 0, 10_000),
            (3, 40, 4097),
            (0, 16, PARALLEL_FROM + 77),
            (5, 5, PARALLEL_FROM),
            (1, 20, (1 << 20) + 3),
        ] {
            let mut dst = vec![0u8; len + 64];
            // SAFETY: both ranges are in bounds of distinct vectors.
            unsafe { copy_bytes(src.as_ptr().add(from), dst.as_mut_ptr().add(to), len) };
            assert_eq!(
                &dst[to..to + len],
                &src[from..from + len],
                "{from} {to} {len}"
            );
            assert!(dst[..to].iter().all(|b| *b == 0));
            assert!(dst[to + len..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn aliasing_copies_run_backwards_exactly() {
        let src: Vec<u8> = (0..(3 << 20)).map(|i| (i * 13) as u8).collect();
        for len in [5000, 10_000, (1 << 20) + 5, (2 << 20) + 4096] {
            let mut dst = vec![0u8; len + 8192];
            // Place the destination 16 bytes past the source, modulo 4 KiB.
            let want = (src.as_ptr() as usize + 16) % 4096;
            let to = (want + 4096 - dst.as_ptr() as usize % 4096) % 4096;
            let at = dst.as_mut_ptr().wrapping_add(to);
            assert!(ALIASING.contains(&((at as usize).wrapping_sub(src.as_ptr() as usize) % 4096)));
            // SAFETY: both ranges are in bounds of distinct vectors.
            unsafe { copy_one(src.as_ptr(), at, len) };
            assert_eq!(&dst[to..to + len], &src[..len]);
            assert!(dst[to + len..].iter().all(|b| *b == 0) && dst[..to].iter().all(|b| *b == 0));
        }
    }
}
