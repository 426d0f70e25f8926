//! Running plain Rust loops with the widest vector ISA the CPU has.
//!
//! The crate is compiled for the baseline target (SSE2 on x86-64), so auto-vectorised loops use
//! 4-lane vectors and no FMA. [`vectorized`] calls a closure from inside a function compiled with
//! AVX-512 (or AVX2 + FMA) enabled, chosen once at run time; the closure is inlined there, so its
//! loops are vectorised for that ISA. On other targets it simply calls the closure.

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::sync::atomic::{AtomicU8, Ordering};

    /// 0: not detected yet, 1: baseline, 2: AVX2 + FMA, 3: AVX-512.
    static LEVEL: AtomicU8 = AtomicU8::new(0);

    #[inline]
    pub fn level() -> u8 {
        let l = LEVEL.load(Ordering::Relaxed);
        if l != 0 {
            return l;
        }
        let l = if std::env::var_os("KILN_NO_AVX512").is_none()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("fma")
        {
            3
        } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            2
        } else {
            1
        };
        LEVEL.store(l, Ordering::Relaxed);
        l
    }

    /// # Safety
    /// The CPU must support AVX-512 F/BW/DQ/VL and FMA.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
    pub unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// Calls `f` compiled for the best vector ISA available. Put the whole hot loop inside `f`
/// (marking helpers it calls `#[inline(always)]`), not a call per element.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match x86::level() {
            // SAFETY: level() checked the features each variant enables.
            3 => unsafe { x86::avx512(f) },
            2 => unsafe { x86::avx2(f) },
            _ => f(),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        f()
    }
}

/// Lanes used by the reductions below (a multiple of every vector width we target).
const LANES: usize = 16;

/// Maximum of `v` (NaN elements are skipped; -inf for an empty slice).
#[inline(always)]
pub fn max_f32(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = if c[i] > acc[i] { c[i] } else { acc[i] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &x in acc.iter().chain(chunks.remainder()) {
        if x > m {
            m = x;
        }
    }
    m
}

/// Sum of `v` with `LANES` independent accumulators (vectorisable; not sequential order).
#[inline(always)]
pub fn sum_f32(v: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    let mut s = 0f32;
    for &x in chunks.remainder() {
        s += x;
    }
    acc.iter().sum::<f32>() + s
}

/// Sum of squared deviations from `mean`.
#[inline(always)]
pub fn sum_sq_dev_f32(v: &[f32], mean: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = v.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            let d = c[i] - mean;
            acc[i] += d * d;
        }
    }
    let mut s = 0f32;
    for &x in chunks.remainder() {
        let d = x - mean;
        s += d * d;
    }
    acc.iter().sum::<f32>() + s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reductions_match_sequential_definitions() {
        for n in [0usize, 1, 5, 16, 17, 33, 100, 1000] {
            let v: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.25).collect();
            let want_max = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let want_sum: f64 = v.iter().map(|&x| x as f64).sum();
            let mean = if n > 0 { (want_sum / n as f64) as f32 } else { 0.0 };
            let want_sq: f64 = v.iter().map(|&x| ((x - mean) as f64).powi(2)).sum();
            vectorized(|| {
                assert_eq!(max_f32(&v), want_max);
                assert!((sum_f32(&v) as f64 - want_sum).abs() <= 1e-4 * (1.0 + want_sum.abs()));
                assert!((sum_sq_dev_f32(&v, mean) as f64 - want_sq).abs() <= 1e-4 * (1.0 + want_sq));
            });
        }
    }

    #[test]
    fn max_skips_nan() {
        let mut v = vec![1.0f32; 40];
        v[3] = f32::NAN;
        v[20] = 7.0;
        v[39] = f32::NAN;
        assert_eq!(vectorized(|| max_f32(&v)), 7.0);
    }
}
