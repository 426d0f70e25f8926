//! Complex FFT of any length: iterative radix-2 for powers of two, direct evaluation for short
//! lengths, Bluestein's chirp-z algorithm for the rest. Computed in f64.

use std::f64::consts::PI;

/// A complex number in f64.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct C {
    pub re: f64,
    pub im: f64,
}

impl C {
    pub const ZERO: C = C { re: 0.0, im: 0.0 };
    pub fn new(re: f64, im: f64) -> C {
        C { re, im }
    }
    /// e^{i·theta}.
    pub fn expi(theta: f64) -> C {
        C { re: theta.cos(), im: theta.sin() }
    }
    pub fn conj(self) -> C {
        C { re: self.re, im: -self.im }
    }
    pub fn add(self, o: C) -> C {
        C { re: self.re + o.re, im: self.im + o.im }
    }
    pub fn sub(self, o: C) -> C {
        C { re: self.re - o.re, im: self.im - o.im }
    }
    pub fn mul(self, o: C) -> C {
        C { re: self.re * o.re - self.im * o.im, im: self.re * o.im + self.im * o.re }
    }
    pub fn scale(self, s: f64) -> C {
        C { re: self.re * s, im: self.im * s }
    }
}

/// Lengths up to this use direct O(n²) evaluation when they are not powers of two.
const DIRECT_MAX: usize = 32;

enum Kind {
    /// n ≤ 1: the transform is the identity.
    Trivial,
    /// Twiddles e^{-2πij/n} for j < n/2.
    Radix2 { tw: Vec<C> },
    /// Twiddles e^{-2πij/n} for j < n.
    Direct { tw: Vec<C> },
    /// Chirp w[k] = e^{-πik²/n}, the FFT of the convolution filter, and the power-of-two plan.
    Bluestein { w: Vec<C>, filter: Vec<C>, inner: Box<Fft> },
}

/// A planned forward transform of one length, reusable across lines.
pub struct Fft {
    n: usize,
    kind: Kind,
}

impl Fft {
    pub fn new(n: usize) -> Fft {
        let kind = if n <= 1 {
            Kind::Trivial
        } else if n.is_power_of_two() {
            Kind::Radix2 { tw: (0..n / 2).map(|j| C::expi(-2.0 * PI * j as f64 / n as f64)).collect() }
        } else if n <= DIRECT_MAX {
            Kind::Direct { tw: (0..n).map(|j| C::expi(-2.0 * PI * j as f64 / n as f64)).collect() }
        } else {
            let m = (2 * n - 1).next_power_of_two();
            let two_n = 2 * n as u128;
            // k² mod 2n keeps the chirp angle small and exact for large k.
            let w: Vec<C> = (0..n)
                .map(|k| {
                    let k2 = ((k as u128 * k as u128) % two_n) as f64;
                    C::expi(-PI * k2 / n as f64)
                })
                .collect();
            let mut filter = vec![C::ZERO; m];
            filter[0] = w[0].conj();
            for k in 1..n {
                filter[k] = w[k].conj();
                filter[m - k] = w[k].conj();
            }
            let inner = Box::new(Fft::new(m));
            let mut scratch = Vec::new();
            inner.forward(&mut filter, &mut scratch);
            Kind::Bluestein { w, filter, inner }
        };
        Fft { n, kind }
    }

    /// In-place forward transform X[k] = Σ x[t]·e^{-2πikt/n}; `buf.len()` must equal `len()`.
    pub fn forward(&self, buf: &mut [C], scratch: &mut Vec<C>) {
        debug_assert_eq!(buf.len(), self.n);
        match &self.kind {
            Kind::Trivial => {}
            Kind::Radix2 { tw } => radix2(buf, tw),
            Kind::Direct { tw } => {
                let n = self.n;
                scratch.clear();
                scratch.extend_from_slice(buf);
                for (k, out) in buf.iter_mut().enumerate() {
                    let mut acc = C::ZERO;
                    let mut idx = 0usize;
                    for x in scratch.iter() {
                        acc = acc.add(x.mul(tw[idx]));
                        idx += k;
                        if idx >= n {
                            idx -= n;
                        }
                    }
                    *out = acc;
                }
            }
            Kind::Bluestein { w, filter, inner } => {
                let m = filter.len();
                let mut a = vec![C::ZERO; m];
                for k in 0..self.n {
                    a[k] = buf[k].mul(w[k]);
                }
                inner.forward(&mut a, scratch);
                for (x, f) in a.iter_mut().zip(filter) {
                    *x = x.mul(*f).conj();
                }
                // Inverse via conjugation: ifft(y) = conj(fft(conj(y))) / m.
                inner.forward(&mut a, scratch);
                let s = 1.0 / m as f64;
                for k in 0..self.n {
                    buf[k] = a[k].conj().scale(s).mul(w[k]);
                }
            }
        }
    }

    /// In-place unnormalized inverse transform x[t] = Σ X[k]·e^{+2πikt/n}.
    pub fn inverse_unscaled(&self, buf: &mut [C], scratch: &mut Vec<C>) {
        for v in buf.iter_mut() {
            *v = v.conj();
        }
        self.forward(buf, scratch);
        for v in buf.iter_mut() {
            *v = v.conj();
        }
    }
}

fn radix2(buf: &mut [C], tw: &[C]) {
    let n = buf.len();
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if i < j {
            buf.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = n / len;
        for start in (0..n).step_by(len) {
            for j in 0..half {
                let t = buf[start + j + half].mul(tw[j * step]);
                let u = buf[start + j];
                buf[start + j] = u.add(t);
                buf[start + j + half] = u.sub(t);
            }
        }
        len *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[C]) -> Vec<C> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter().enumerate().fold(C::ZERO, |acc, (t, v)| {
                    acc.add(v.mul(C::expi(-2.0 * PI * ((k * t) % n) as f64 / n as f64)))
                })
            })
            .collect()
    }

    #[test]
    fn small_known_transform() {
        // DFT of [1, 2, 3, 4] is [10, -2+2i, -2, -2-2i].
        let mut x: Vec<C> = [1.0, 2.0, 3.0, 4.0].iter().map(|&r| C::new(r, 0.0)).collect();
        Fft::new(4).forward(&mut x, &mut Vec::new());
        let want = [C::new(10.0, 0.0), C::new(-2.0, 2.0), C::new(-2.0, 0.0), C::new(-2.0, -2.0)];
        for (a, b) in x.iter().zip(&want) {
            assert!((a.re - b.re).abs() < 1e-12 && (a.im - b.im).abs() < 1e-12, "{a:?} vs {b:?}");
        }
        // Length 3: [1, 0, 0] → all ones; [0, 1, 0] → e^{-2πik/3}.
        let mut y = vec![C::new(0.0, 0.0), C::new(1.0, 0.0), C::new(0.0, 0.0)];
        Fft::new(3).forward(&mut y, &mut Vec::new());
        assert!((y[1].re + 0.5).abs() < 1e-12 && (y[1].im + 3f64.sqrt() / 2.0).abs() < 1e-12);
    }

    #[test]
    fn all_kinds_match_naive_and_invert() {
        for n in [1usize, 2, 5, 8, 12, 31, 33, 64, 97, 100, 255] {
            let x: Vec<C> = (0..n).map(|i| C::new((i as f64 * 0.37).sin(), (i as f64 * 1.3).cos())).collect();
            let plan = Fft::new(n);
            let mut y = x.clone();
            let mut s = Vec::new();
            plan.forward(&mut y, &mut s);
            for (a, b) in y.iter().zip(naive(&x)) {
                assert!((a.re - b.re).abs() < 1e-9 && (a.im - b.im).abs() < 1e-9, "n={n}");
            }
            plan.inverse_unscaled(&mut y, &mut s);
            for (a, b) in y.iter().zip(&x) {
                assert!((a.re / n as f64 - b.re).abs() < 1e-9 && (a.im / n as f64 - b.im).abs() < 1e-9);
            }
        }
    }
}
