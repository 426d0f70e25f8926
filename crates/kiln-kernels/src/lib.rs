//! kiln-kernels: numeric inner loops with no knowledge of graphs or ONNX.
//!
//! Matrix multiplication (sgemm/dgemm with strides), the vectorisable helpers the operators
//! share ([`vmath`]: vectorised exp/sigmoid/tanh; [`simd`]: running plain loops with the CPU's
//! widest ISA), and intra-op parallelism ([`par`]: the fork-join pool a run's kernels split work
//! over). Depends on nothing of Kiln's. Single precision uses our packed GEMM ([`gemm`]:
//! AVX-512 / AVX2+FMA / portable micro-kernels chosen at run time, prepacked operands, fused
//! epilogues); double precision and negative strides use `matrixmultiply`.

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
    assert!(k == 0 || (a.len() as isize > (m as isize - 1) * rsa.abs() + (k as isize - 1) * csa.abs()));
    assert!(k == 0 || (b.len() as isize > (k as isize - 1) * rsb.abs() + (n as isize - 1) * csb.abs()));
    assert!(c.len() as isize > (m as isize - 1) * rsc.abs() + (n as isize - 1) * csc.abs());
    // SAFETY: matrixmultiply reads from the slices' start pointers; the slices hold the extreme
    // elements of each view (asserted above).
    unsafe {
        matrixmultiply::sgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
    }
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
    assert!(rsa >= 0 && csa >= 0 && rsb >= 0 && csb >= 0 && rsc >= 0 && csc >= 0, "dgemm: negative strides");
    assert!(k == 0 || a.len() as isize > (m as isize - 1) * rsa + (k as isize - 1) * csa);
    assert!(k == 0 || b.len() as isize > (k as isize - 1) * rsb + (n as isize - 1) * csb);
    assert!(c.len() as isize > (m as isize - 1) * rsc + (n as isize - 1) * csc);
    // SAFETY: strides are non-negative and the slices hold the last element of each view.
    unsafe {
        matrixmultiply::dgemm(m, k, n, alpha, a.as_ptr(), rsa, csa, b.as_ptr(), rsb, csb, beta, c.as_mut_ptr(), rsc, csc);
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
}
