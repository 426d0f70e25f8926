//! kiln-kernels: numeric inner loops with no knowledge of graphs or ONNX.
//!
//! Matrix multiplication (sgemm/dgemm with strides), the vectorisable helpers the operators
//! share ([`vmath`]: vectorised exp/sigmoid/tanh; [`simd`]: running plain loops with the CPU's
//! widest ISA), and intra-op parallelism ([`par`]: the fork-join pool a run's kernels split work
//! over). Depends on nothing of Kiln's. Single precision uses our packed GEMM ([`gemm`]:
//! AVX-512 / AVX2+FMA / portable micro-kernels chosen at run time, prepacked operands, fused
//! epilogues); double precision uses `matrixmultiply` natively and [`gemm_strided`] in
//! WebAssembly, which also serves the rare views with negative strides.

pub mod act;
pub mod convdirect;
pub mod convgemm;
pub mod dwconv;
pub mod elementwise;
pub mod gemm;
pub mod par;
pub mod pool;
pub mod simd;
pub mod tree;
pub mod vmath;
pub mod winograd;

pub use act::{Activation, Gelu};
pub use convgemm::{conv2d_gemm, Conv2dGeometry};
pub use dwconv::{depthwise_conv2d, DwGeometry};
pub use gemm::{best_isa, sgemm_ex, sgemm_new, Epilogue, Isa, Lhs, MatRef, PackedA, PackedB, Rhs};

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
    if m == 1 && csa == 1 && k > 0 && (csb == 1 || rsb == 1) && csc == 1 {
        sgemv(k, n, alpha, &a[..k], b, rsb, csb, beta, &mut c[..n]);
        return;
    }
    if rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0 && rsc >= 0 && csc >= 0 {
        let ep = Epilogue { alpha, beta, ..Epilogue::default() };
        sgemm_ex(m, k, n, Lhs::Strided(MatRef::new(a, rsa, csa)), Rhs::Strided(MatRef::new(b, rsb, csb)), c, rsc, csc, &ep, 1);
        return;
    }
    gemm_strided(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
}

/// c[n] = alpha · a[k] · B[k×n] + beta · c, for B either row-major (`csb == 1`) or column-major
/// (`rsb == 1`, e.g. a transposed Linear weight). Avoids GEMM packing for batch-1 products.
#[allow(clippy::too_many_arguments)]
fn sgemv(k: usize, n: usize, alpha: f32, a: &[f32], b: &[f32], rsb: isize, csb: isize, beta: f32, c: &mut [f32]) {
    if csb == 1 {
        // Row-major B: accumulate rows scaled by a[p].
        let rsb = rsb as usize;
        let mut acc = vec![0f32; n];
        for (p, &ap) in a.iter().enumerate() {
            let row = &b[p * rsb..p * rsb + n];
            for (x, &y) in acc.iter_mut().zip(row) {
                *x += ap * y;
            }
        }
        for (ci, x) in c.iter_mut().zip(acc) {
            *ci = if beta == 0.0 { alpha * x } else { alpha * x + beta * *ci };
        }
    } else {
        // Column-major B: each output is a contiguous dot product.
        let csb = csb as usize;
        for (j, ci) in c.iter_mut().enumerate() {
            let col = &b[j * csb..j * csb + k];
            let d = dot(a, col);
            *ci = if beta == 0.0 { alpha * d } else { alpha * d + beta * *ci };
        }
    }
}

/// Dot product with 8 independent accumulators (vectorises well).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for l in 0..8 {
            acc[l] += a[i * 8 + l] * b[i * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
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
    #[cfg(target_arch = "wasm32")]
    gemm_strided(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
    #[cfg(not(target_arch = "wasm32"))]
    {
        if rsa < 0 || csa < 0 || rsb < 0 || csb < 0 || rsc < 0 || csc < 0 {
            gemm_strided(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc);
            return;
        }
        assert!(k == 0 || a.len() as isize > (m as isize - 1) * rsa + (k as isize - 1) * csa);
        assert!(k == 0 || b.len() as isize > (k as isize - 1) * rsb + (n as isize - 1) * csb);
        assert!(c.len() as isize > (m as isize - 1) * rsc + (n as isize - 1) * csc);
        // SAFETY: strides are non-negative and the slices hold the last element of each view.
        unsafe {
            matrixmultiply::dgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
        }
    }
}

/// C[m×n] = alpha · A[m×k] · B[k×n] + beta · C for any strides, negative ones included (a view
/// then starts at the slice's element 0 and walks backwards from an offset, as with a reversed
/// axis). Rows of C are accumulated from rows of B, which vectorises when B and C are row-major.
/// With `beta == 0`, C's previous contents are ignored (NaN included), as in BLAS.
#[allow(clippy::too_many_arguments)]
pub fn gemm_strided<T>(
    m: usize, k: usize, n: usize, alpha: T,
    a: &[T], rsa: isize, csa: isize,
    b: &[T], rsb: isize, csb: isize,
    beta: T, c: &mut [T], rsc: isize, csc: isize,
) where
    T: Copy + Default + PartialEq + std::ops::Add<Output = T> + std::ops::Mul<Output = T>,
{
    // Offset of element (0, 0) so that every element of an r×c view with strides (rs, cs) lies
    // in 0..len; None when the slice is too short.
    fn origin(rows: usize, cols: usize, rs: isize, cs: isize, len: usize) -> Option<isize> {
        if rows == 0 || cols == 0 {
            return Some(0);
        }
        let span = |d: usize, s: isize| (d as isize - 1) * s;
        let lo = span(rows, rs).min(0) + span(cols, cs).min(0);
        let hi = span(rows, rs).max(0) + span(cols, cs).max(0);
        (hi - lo < len as isize).then_some(-lo)
    }
    let oa = origin(m, k, rsa, csa, a.len()).expect("gemm_strided: A is too short for its strides");
    let ob = origin(k, n, rsb, csb, b.len()).expect("gemm_strided: B is too short for its strides");
    let oc = origin(m, n, rsc, csc, c.len()).expect("gemm_strided: C is too short for its strides");
    let zero = T::default();
    let mut acc = vec![zero; n];
    for i in 0..m as isize {
        acc.fill(zero);
        for p in 0..k as isize {
            let x = a[(oa + i * rsa + p * csa) as usize];
            let row = ob + p * rsb;
            for (j, s) in acc.iter_mut().enumerate() {
                *s = *s + x * b[(row + j as isize * csb) as usize];
            }
        }
        for (j, s) in acc.iter().enumerate() {
            let ci = &mut c[(oc + i * rsc + j as isize * csc) as usize];
            *ci = if beta == zero { alpha * *s } else { alpha * *s + beta * *ci };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn sgemv_paths_match_naive() {
        let (k, n) = (19, 11);
        let a: Vec<f32> = (0..k).map(|i| (i as f32 * 0.3).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.07).cos()).collect();
        // Row-major B and the same matrix read column-major (transposed storage).
        for (rsb, csb) in [(n as isize, 1isize), (1, k as isize)] {
            let mut c = vec![1f32; n];
            sgemm(1, k, n, 2.0, &a, k as isize, 1, &b, rsb, csb, 0.5, &mut c, n as isize, 1);
            for j in 0..n {
                let want: f32 = 2.0 * (0..k).map(|p| a[p] * b[(p as isize * rsb + j as isize * csb) as usize]).sum::<f32>() + 0.5;
                assert!((c[j] - want).abs() < 1e-4, "{} vs {}", c[j], want);
            }
        }
    }

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

    /// Naive C = alpha·A·B + beta·C over explicit index maps, summed in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(m: usize, k: usize, n: usize, alpha: f64, a: impl Fn(usize, usize) -> f64, b: impl Fn(usize, usize) -> f64, beta: f64, c0: impl Fn(usize, usize) -> f64) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k).map(|p| a(i, p) * b(p, j)).sum();
                out.push(alpha * s + if beta == 0.0 { 0.0 } else { beta * c0(i, j) });
            }
        }
        out
    }

    #[test]
    fn strided_gemm_handles_negative_strides_and_beta() {
        let (m, k, n) = (4, 6, 5);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.41).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.13).cos()).collect();
        // A with rows reversed (negative row stride), B column-major with columns reversed, C
        // column-major.
        let av = |i: usize, p: usize| a[(m - 1 - i) * k + p];
        let bv = |p: usize, j: usize| b[(n - 1 - j) * k + p];
        for beta in [0.0, 0.5] {
            let mut c = vec![f64::NAN; m * n];
            if beta != 0.0 {
                c.iter_mut().enumerate().for_each(|(i, x)| *x = i as f64);
            }
            let want = reference(m, k, n, 1.5, av, bv, beta, |i, j| (j * m + i) as f64);
            dgemm(m, k, n, 1.5, &a, -(k as isize), 1, &b, 1, -(k as isize), beta, &mut c, 1, m as isize);
            let got: Vec<f64> = (0..m).flat_map(|i| (0..n).map(move |j| (i, j))).map(|(i, j)| c[j * m + i]).collect();
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-12, "{g} vs {w}");
            }
            let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            let b32: Vec<f32> = b.iter().map(|&x| x as f32).collect();
            let mut c32: Vec<f32> = (0..m * n).map(|i| if beta == 0.0 { f32::NAN } else { i as f32 }).collect();
            sgemm(m, k, n, 1.5, &a32, -(k as isize), 1, &b32, 1, -(k as isize), beta as f32, &mut c32, 1, m as isize);
            for (i, w) in want.iter().enumerate() {
                let g = c32[(i % n) * m + i / n];
                assert!((g as f64 - w).abs() < 1e-4, "{g} vs {w}");
            }
        }
        // Row-major positive strides, the native double-precision path.
        let mut c = vec![0f64; m * n];
        dgemm(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut c, n as isize, 1);
        let want = reference(m, k, n, 1.0, |i, p| a[i * k + p], |p, j| b[p * n + j], 0.0, |_, _| 0.0);
        assert!(c.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12));
        let mut c = vec![0f64; m * n];
        gemm_strided(m, k, n, 1.0, &a, k as isize, 1, &b, n as isize, 1, 0.0, &mut c, n as isize, 1);
        assert!(c.iter().zip(&want).all(|(g, w)| (g - w).abs() < 1e-12));
    }
}
