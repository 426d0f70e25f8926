//! Packed GEMM against a naive triple loop, for every ISA available, on odd sizes and strides.

use super::*;

fn naive(m: usize, k: usize, n: usize, a: &MatRef<'_>, b: &MatRef<'_>) -> Vec<f64> {
    let mut c = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a.at(i, p) as f64 * b.at(p, j) as f64).sum();
        }
    }
    c
}

fn fill(len: usize, seed: usize) -> Vec<f32> {
    (0..len).map(|i| (((i * 7919 + seed * 104729) % 1000) as f32 / 500.0) - 1.0).collect()
}

fn close(got: f32, want: f64, k: usize) -> bool {
    (got as f64 - want).abs() <= 1e-5 * (k as f64 + 1.0) + 1e-5 * want.abs()
}

#[test]
fn strided_and_packed_match_naive() {
    let sizes = [(1, 1, 1), (3, 5, 7), (8, 256, 32), (13, 300, 45), (17, 513, 70), (40, 33, 100), (9, 1, 16), (37, 300, 1), (1, 300, 45), (1, 513, 70), (1, 1030, 100), (20, 600, 1)];
    for isa in available_isas() {
        let info = KernelInfo::for_isa(isa);
        for &(m, k, n) in &sizes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let av = fill(m * k + 3, 1);
                let bv = fill(k * n + 5, 2);
                let a = if ta { MatRef::new(&av, 1, m as isize) } else { MatRef::new(&av, k as isize, 1) };
                let b = if tb { MatRef::new(&bv, 1, k as isize) } else { MatRef::new(&bv, n as isize, 1) };
                let want = naive(m, k, n, &a, &b);
                let pa = PackedA::with_isa(isa, m, k, a);
                let pb = PackedB::with_isa(isa, k, n, b);
                for (li, lhs) in [Lhs::Strided(a), Lhs::Packed(&pa)].into_iter().enumerate() {
                    for (ri, rhs) in [Rhs::Strided(b), Rhs::Packed(&pb)].into_iter().enumerate() {
                        for threads in [1, 2] {
                            // C with a padded row stride; padding must stay untouched.
                            let ldc = n + 3;
                            let mut c = vec![f32::NAN; m * ldc];
                            sgemm_with(info, m, k, n, lhs, rhs, &mut c, ldc as isize, 1, &Epilogue::default(), threads);
                            for i in 0..m {
                                for j in 0..n {
                                    assert!(close(c[i * ldc + j], want[i * n + j], k), "{isa:?} {m}x{k}x{n} ta{ta} tb{tb} l{li} r{ri} at ({i},{j}): {} vs {}", c[i * ldc + j], want[i * n + j]);
                                }
                                assert!(c[i * ldc + n..(i + 1) * ldc].iter().all(|v| v.is_nan()));
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn row_contiguous_a_with_padded_rows_matches_naive() {
    // A read in place: row stride above k, several row and depth blocks, a partial last panel,
    // and A's buffer ending exactly at its last element.
    let _pool = crate::par::enter(crate::par::build_pool(2));
    for &(m, k, n) in &[(200usize, 300usize, 70usize), (197, 64, 197), (25, 513, 33), (8, 7, 16)] {
        let lda = k + 5;
        let av = fill((m - 1) * lda + k, 8);
        let bv = fill(k * n, 9);
        let a = MatRef::new(&av, lda as isize, 1);
        let b = MatRef::new(&bv, n as isize, 1);
        let want = naive(m, k, n, &a, &b);
        for isa in available_isas() {
            let info = KernelInfo::for_isa(isa);
            let pb = PackedB::with_isa(isa, k, n, b);
            for rhs in [Rhs::Strided(b), Rhs::Packed(&pb)] {
                for threads in [1, 2] {
                    let mut c = vec![f32::NAN; m * n];
                    sgemm_with(info, m, k, n, Lhs::Strided(a), rhs, &mut c, n as isize, 1, &Epilogue::default(), threads);
                    for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        assert!(close(got, w, k), "{isa:?} {m}x{k}x{n} t{threads} at {idx}: {got} vs {w}");
                    }
                }
            }
        }
    }
}

#[test]
fn epilogue_alpha_beta_bias_relu() {
    // Two column panels; one narrow panel (one vector) over two depth blocks.
    for (m, k, n) in [(11, 37, 53), (9, 300, 13)] {
        epilogue_case(m, k, n);
    }
}

fn epilogue_case(m: usize, k: usize, n: usize) {
    for isa in available_isas() {
        let info = KernelInfo::for_isa(isa);
        let av = fill(m * k, 3);
        let bv = fill(k * n, 4);
        let a = MatRef::new(&av, k as isize, 1);
        let b = MatRef::new(&bv, n as isize, 1);
        let prod = naive(m, k, n, &a, &b);
        let rb = fill(m, 5);
        let cb = fill(n, 6);
        let c0 = fill(m * n, 7);
        let mut c = c0.clone();
        let ep = Epilogue { alpha: 0.5, beta: 2.0, row_bias: Some(&rb), col_bias: Some(&cb), relu: true, act: crate::act::Activation::Identity, gelu: None };
        sgemm_with(info, m, k, n, Lhs::Strided(a), Rhs::Strided(b), &mut c, n as isize, 1, &ep, 1);
        for i in 0..m {
            for j in 0..n {
                let want = (0.5 * prod[i * n + j] + 2.0 * c0[i * n + j] as f64 + rb[i] as f64 + cb[j] as f64).max(0.0);
                assert!(close(c[i * n + j], want, k), "{isa:?} ({i},{j}): {} vs {want}", c[i * n + j]);
            }
        }
        // Column-major C (row stride 1: the transposed-store path) and A packed (partial last
        // row tile), read in place, and column-major (packed per call).
        let pa = PackedA::with_isa(isa, m, k, a);
        let at: Vec<f32> = (0..k * m).map(|q| av[(q % m) * k + q / m]).collect();
        for lhs in [Lhs::Strided(a), Lhs::Packed(&pa), Lhs::Strided(MatRef::new(&at, 1, m as isize))] {
            let mut ct: Vec<f32> = (0..m * n).map(|q| c0[(q % m) * n + q / m]).collect();
            sgemm_with(info, m, k, n, lhs, Rhs::Strided(b), &mut ct, 1, m as isize, &ep, 1);
            for i in 0..m {
                for j in 0..n {
                    let want = (0.5 * prod[i * n + j] + 2.0 * c0[i * n + j] as f64 + rb[i] as f64 + cb[j] as f64).max(0.0);
                    assert!(close(ct[j * m + i], want, k), "{isa:?} column-major ({i},{j}): {} vs {want}", ct[j * m + i]);
                }
            }
        }
    }
}

#[test]
fn empty_depth_applies_epilogue() {
    let rb = [1.0f32, -3.0];
    let mut c = vec![5.0f32; 6];
    let ep = Epilogue { alpha: 1.0, beta: 1.0, row_bias: Some(&rb), col_bias: None, relu: true, act: crate::act::Activation::Identity, gelu: None };
    sgemm_ex(2, 0, 3, Lhs::Strided(MatRef::new(&[], 0, 1)), Rhs::Strided(MatRef::new(&[], 3, 1)), &mut c, 3, 1, &ep, 1);
    assert_eq!(c, vec![6.0, 6.0, 6.0, 2.0, 2.0, 2.0]);
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn row_times_packed_b_split_over_threads_matches_naive() {
    let _pool = crate::par::enter(crate::par::build_pool(2));
    for &(k, n) in &[(300usize, 1000usize), (1024, 4096), (513, 1003), (64, 8000)] {
        let (av, bv) = (fill(k, 5), fill(k * n, 6));
        let (a, b) = (MatRef::new(&av, k as isize, 1), MatRef::new(&bv, n as isize, 1));
        let want = naive(1, k, n, &a, &b);
        let bias: Vec<f32> = fill(n, 7);
        for isa in available_isas() {
            let pb = PackedB::with_isa(isa, k, n, b);
            let mut c = vec![0f32; n];
            let ep = Epilogue { col_bias: Some(&bias), ..Epilogue::default() };
            sgemm_ex(1, k, n, Lhs::Strided(a), Rhs::Packed(&pb), &mut c, n as isize, 1, &ep, 2);
            for j in 0..n {
                assert!(close(c[j], want[j] + bias[j] as f64, k), "{isa:?} k={k} n={n} j={j}: {} vs {}", c[j], want[j]);
            }
        }
    }
}

#[test]
fn product_over_several_column_and_depth_blocks_matches_naive() {
    // More columns than one column block and more depth than one depth block, with a partial
    // last block of each; column-major operands go through the transposing packers.
    let (m, k, n) = (70usize, 300usize, 2100usize);
    for isa in available_isas() {
        let info = KernelInfo::for_isa(isa);
        assert!(n > info.nc && k > info.kc);
        for (ta, tb) in [(false, false), (true, true)] {
            let av = fill(m * k, 11);
            let bv = fill(k * n, 12);
            let a = if ta { MatRef::new(&av, 1, m as isize) } else { MatRef::new(&av, k as isize, 1) };
            let b = if tb { MatRef::new(&bv, 1, k as isize) } else { MatRef::new(&bv, n as isize, 1) };
            let want = naive(m, k, n, &a, &b);
            let pa = PackedA::with_isa(isa, m, k, a);
            let pb = PackedB::with_isa(isa, k, n, b);
            let bias = fill(n, 13);
            let ep = Epilogue { col_bias: Some(&bias), ..Epilogue::default() };
            for lhs in [Lhs::Strided(a), Lhs::Packed(&pa)] {
                for rhs in [Rhs::Strided(b), Rhs::Packed(&pb)] {
                    let mut c = vec![f32::NAN; m * n];
                    sgemm_with(info, m, k, n, lhs, rhs, &mut c, n as isize, 1, &ep, 1);
                    for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
                        let w = w + bias[idx % n] as f64;
                        assert!(close(got, w, k), "{isa:?} ta{ta} tb{tb} at ({}, {}): {got} vs {w}", idx / n, idx % n);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn new_buffer_products_match_naive() {
    // Every path of the product (empty depth, one column, one row against a packed B, tiles)
    // writes each element of the fresh output; beta in the epilogue is ignored.
    let _pool = crate::par::enter(crate::par::build_pool(2));
    for &(m, k, n) in &[(5usize, 0usize, 7usize), (37, 300, 1), (1, 513, 70), (13, 300, 45), (70, 600, 2100), (0, 4, 3)] {
        let av = fill(m * k + 1, 21);
        let bv = fill(k * n + 1, 22);
        let a = MatRef::new(&av, k as isize, 1);
        let b = MatRef::new(&bv, n as isize, 1);
        let want = naive(m, k, n, &a, &b);
        let bias = fill(n, 23);
        let pb = PackedB::new(k, n, b);
        for rhs in [Rhs::Strided(b), Rhs::Packed(&pb)] {
            for threads in [1, 2] {
                let ep = Epilogue { beta: 3.0, col_bias: Some(&bias), ..Epilogue::default() };
                let c = sgemm_new(m, k, n, Lhs::Strided(a), rhs, &ep, threads);
                assert_eq!(c.len(), m * n);
                for (idx, &got) in c.iter().enumerate() {
                    let w = want[idx] + bias[idx % n] as f64;
                    assert!(close(got, w, k), "{m}x{k}x{n} t{threads} at {idx}: {got} vs {w}");
                }
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn gelu_epilogue_matches_definition() {
    // Every path: tiles (one and two threads, several depth blocks), one column, one row against
    // a packed B, empty depth; column-major C through the strided store.
    let _pool = crate::par::enter(crate::par::build_pool(2));
    let gelu_ref = |g: Gelu, x: f64| match g {
        Gelu::Erf => 0.5 * x * (1.0 + crate::vmath::tests::erf_f64(x / std::f64::consts::SQRT_2)),
        Gelu::Tanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()),
    };
    for &(m, k, n) in &[(13usize, 300usize, 45usize), (70, 600, 130), (37, 40, 1), (1, 513, 70), (5, 0, 7)] {
        let av = fill(m * k + 1, 31);
        let bv = fill(k * n + 1, 32);
        let a = MatRef::new(&av, k as isize, 1);
        let b = MatRef::new(&bv, n as isize, 1);
        let prod = naive(m, k, n, &a, &b);
        let bias: Vec<f32> = fill(n, 33).iter().map(|v| 3.0 * v).collect();
        let pb = PackedB::new(k, n, b);
        for g in [Gelu::Erf, Gelu::Tanh] {
            let ep = Epilogue { col_bias: Some(&bias), gelu: Some(g), ..Epilogue::default() };
            for rhs in [Rhs::Strided(b), Rhs::Packed(&pb)] {
                for threads in [1, 2] {
                    let c = sgemm_new(m, k, n, Lhs::Strided(a), rhs, &ep, threads);
                    let mut ct = vec![0f32; m * n];
                    sgemm_ex(m, k, n, Lhs::Strided(a), rhs, &mut ct, 1, m.max(1) as isize, &ep, threads);
                    for idx in 0..m * n {
                        let w = gelu_ref(g, prod[idx] + bias[idx % n] as f64);
                        let (i, j) = (idx / n, idx % n);
                        assert!(close(c[idx], w, k), "{g:?} {m}x{k}x{n} t{threads} at {idx}: {} vs {w}", c[idx]);
                        assert!(close(ct[j * m + i], w, k), "{g:?} {m}x{k}x{n} t{threads} transposed at {idx}: {} vs {w}", ct[j * m + i]);
                    }
                }
            }
        }
    }
}

#[test]
fn finer_splits_cover_every_element_once_in_whole_panels() {
    for isa in available_isas() {
        let info = KernelInfo::for_isa(isa);
        for &(m, n) in &[(128usize, 3072usize), (128, 768), (7, 1000), (300, 40), (1, 64), (50, 50), (6, 2)] {
            for threads in [1usize, 2, 3] {
                for per_thread in [1usize, 4] {
                    let parts = split_parts_by(&info, m, n, usize::MAX, 0, threads, per_thread);
                    assert!(!parts.is_empty());
                    if parts.len() > 1 {
                        assert!(parts.len() >= threads, "{m}x{n} t{threads}: {parts:?}");
                    }
                    let mut seen = vec![0u8; m * n];
                    for &(i0, i1, j0, j1) in &parts {
                        assert!(i0 < i1 && i1 <= m && j0 < j1 && j1 <= n, "{m}x{n}: {parts:?}");
                        assert!(i0 % info.mr == 0 && j0 % info.nr == 0, "{m}x{n}: {parts:?}");
                        for i in i0..i1 {
                            for j in j0..j1 {
                                seen[i * n + j] += 1;
                            }
                        }
                    }
                    assert!(seen.iter().all(|&c| c == 1), "{isa:?} {m}x{n} t{threads} p{per_thread}: {parts:?}");
                }
            }
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn products_split_in_several_parts_per_thread_match_naive() {
    // Large enough to be threaded: column parts (with a partial last panel) and row parts.
    let _pool = crate::par::enter(crate::par::build_pool(2));
    for &(m, k, n) in &[(128usize, 96usize, 768usize), (64, 256, 1000), (300, 128, 40), (97, 130, 515)] {
        let (av, bv) = (fill(m * k, 21), fill(k * n, 22));
        let (a, b) = (MatRef::new(&av, k as isize, 1), MatRef::new(&bv, n as isize, 1));
        let want = naive(m, k, n, &a, &b);
        for isa in available_isas() {
            let info = KernelInfo::for_isa(isa);
            let pb = PackedB::with_isa(isa, k, n, b);
            for rhs in [Rhs::Strided(b), Rhs::Packed(&pb)] {
                let mut c = vec![f32::NAN; m * n];
                sgemm_with(info, m, k, n, Lhs::Strided(a), rhs, &mut c, n as isize, 1, &Epilogue::default(), 2);
                for (idx, (&got, &w)) in c.iter().zip(&want).enumerate() {
                    assert!(close(got, w, k), "{isa:?} {m}x{k}x{n} at ({}, {}): {got} vs {w}", idx / n, idx % n);
                }
            }
        }
    }
}
