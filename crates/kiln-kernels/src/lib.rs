//! kiln-kernels: numeric inner loops with no knowledge of graphs or ONNX.
//!
//! Matrix multiplication (sgemm/dgemm with strides), and the vectorisable helpers the
//! operators share. Depends on nothing of Kiln's; `matrixmultiply` provides packed, runtime-dispatched
//! (AVX2/FMA, scalar fallback on other targets) GEMM for now.

/// C[m×n] = alpha · A[m×k] · B[k×n] + beta · C, with arbitrary row/column strides (in elements).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize, k: usize, n: usize, alpha: f32,
    a: &[f32], rsa: isize, csa: isize,
    b: &[f32], rsb: isize, csb: isize,
    beta: f32, c: &mut [f32], rsc: isize, csc: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: callers pass slices large enough for the given shape and strides; checked below in debug.
    debug_assert!(k == 0 || a.len() as isize > (m as isize - 1) * rsa + (k as isize - 1) * csa);
    debug_assert!(k == 0 || b.len() as isize > (k as isize - 1) * rsb + (n as isize - 1) * csb);
    debug_assert!(c.len() as isize > (m as isize - 1) * rsc + (n as isize - 1) * csc);
    unsafe {
        matrixmultiply::sgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
    }
}

/// Double-precision counterpart of [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub fn dgemm(
    m: usize, k: usize, n: usize, alpha: f64,
    a: &[f64], rsa: isize, csa: isize,
    b: &[f64], rsb: isize, csb: isize,
    beta: f64, c: &mut [f64], rsc: isize, csc: isize,
) {
    if m == 0 || n == 0 {
        return;
    }
    debug_assert!(k == 0 || a.len() as isize > (m as isize - 1) * rsa + (k as isize - 1) * csa);
    debug_assert!(k == 0 || b.len() as isize > (k as isize - 1) * rsb + (n as isize - 1) * csb);
    debug_assert!(c.len() as isize > (m as isize - 1) * rsc + (n as isize - 1) * csc);
    unsafe {
        matrixmultiply::dgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sgemm_matches_naive() {
        let (m, k, n) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        let mut c = vec![0f32; m * n];
        sgemm(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut c, n as isize, 1);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                assert!((c[i * n + j] - want).abs() < 1e-5);
            }
        }
    }
}
