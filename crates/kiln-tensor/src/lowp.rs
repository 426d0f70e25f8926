//! Low-precision element types (float8, float4 and 4-/2-bit integers), one unpacked value per element.
//!
//! Each type is a newtype over its bit pattern (floats) or its value (integers). Float encoders
//! round to nearest, ties to even, and follow the ONNX Cast rules for overflow, infinity and NaN.

use std::fmt;

/// Bit layout and special-value convention of a small binary float format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Format {
    exp: u32,
    man: u32,
    bias: i32,
    kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// IEEE-like: the all-ones exponent holds infinities (mantissa 0) and NaNs.
    Ieee,
    /// "Finite" with NaN: only all-ones exponent and mantissa is NaN; no infinities.
    Fn,
    /// Finite, unsigned zero: the pattern of negative zero is the single NaN.
    Fnuz,
    /// No infinities and no NaN at all.
    Finite,
}

const E4M3FN: Format = Format { exp: 4, man: 3, bias: 7, kind: Kind::Fn };
const E4M3FNUZ: Format = Format { exp: 4, man: 3, bias: 8, kind: Kind::Fnuz };
const E5M2: Format = Format { exp: 5, man: 2, bias: 15, kind: Kind::Ieee };
const E5M2FNUZ: Format = Format { exp: 5, man: 2, bias: 16, kind: Kind::Fnuz };
const E2M1: Format = Format { exp: 2, man: 1, bias: 1, kind: Kind::Finite };

/// 2^n as an f64, for |n| well inside the normal range.
#[inline]
fn exp2i(n: i32) -> f64 {
    f64::from_bits(((n + 1023) as u64) << 52)
}

impl Format {
    #[inline]
    fn sign_bit(self) -> u32 {
        1 << (self.exp + self.man)
    }
    #[inline]
    fn exp_all_ones(self) -> u32 {
        (1 << self.exp) - 1
    }
    #[inline]
    fn man_mask(self) -> u32 {
        (1 << self.man) - 1
    }
    /// Magnitude bits of the largest finite value.
    fn max_mag(self) -> u32 {
        let (e, m) = (self.exp_all_ones(), self.man_mask());
        match self.kind {
            Kind::Ieee => ((e - 1) << self.man) | m,
            Kind::Fn => (e << self.man) | (m - 1),
            Kind::Fnuz | Kind::Finite => (e << self.man) | m,
        }
    }
    /// The NaN pattern for a NaN of the given sign (the Finite kind has none; see `encode`).
    fn nan(self, neg: bool) -> u32 {
        let s = if neg { self.sign_bit() } else { 0 };
        match self.kind {
            Kind::Ieee => s | (self.exp_all_ones() << self.man) | (1 << (self.man - 1)),
            Kind::Fn => s | (self.exp_all_ones() << self.man) | self.man_mask(),
            Kind::Fnuz => self.sign_bit(),
            // Matches the reference (ml_dtypes): NaN becomes a zero of the opposite sign.
            Kind::Finite => self.sign_bit() ^ s,
        }
    }

    fn decode(self, bits: u32) -> f32 {
        let sb = self.sign_bit();
        let neg = bits & sb != 0;
        let e = (bits >> self.man) & self.exp_all_ones();
        let m = bits & self.man_mask();
        let nan = f32::from_bits(0x7fc0_0000 | if neg { 0x8000_0000 } else { 0 });
        match self.kind {
            Kind::Fnuz if bits == sb => return f32::NAN,
            Kind::Fn if e == self.exp_all_ones() && m == self.man_mask() => return nan,
            Kind::Ieee if e == self.exp_all_ones() => {
                return if m != 0 {
                    nan
                } else if neg {
                    f32::NEG_INFINITY
                } else {
                    f32::INFINITY
                }
            }
            _ => {}
        }
        let man = self.man as i32;
        let mag = if e == 0 {
            m as f64 * exp2i(1 - self.bias - man)
        } else {
            ((1 << self.man) | m) as f64 * exp2i(e as i32 - self.bias - man)
        };
        (if neg { -mag } else { mag }) as f32
    }

    fn encode(self, x: f64, saturate: bool) -> u32 {
        let neg = x.is_sign_negative();
        let s = if neg { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan(neg);
        }
        let overflow = if saturate || self.kind == Kind::Finite {
            s | self.max_mag()
        } else {
            match self.kind {
                Kind::Ieee => s | (self.exp_all_ones() << self.man),
                _ => self.nan(neg),
            }
        };
        if x.is_infinite() {
            return overflow;
        }
        let a = x.abs();
        let zero = if self.kind == Kind::Fnuz { 0 } else { s };
        if a == 0.0 {
            return zero;
        }
        let biased = ((a.to_bits() >> 52) & 0x7ff) as i32;
        // f64 subnormals are far below every format's smallest value: they clamp to emin and round to 0.
        let emin = 1 - self.bias;
        let mut e = if biased == 0 { emin } else { (biased - 1023).max(emin) };
        if e > 64 {
            return overflow;
        }
        let q = e - self.man as i32;
        let mut n = (a * exp2i(-q)).round_ties_even() as u32;
        if n >= 2 << self.man {
            n >>= 1;
            e += 1;
        }
        let mag = if n < (1 << self.man) {
            n
        } else {
            (((e + self.bias) as u32) << self.man) | (n - (1 << self.man))
        };
        if mag > self.max_mag() {
            return overflow;
        }
        if mag == 0 {
            return zero;
        }
        s | mag
    }
}

macro_rules! float_type {
    ($(#[$doc:meta])* $name:ident, $fmt:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
        pub struct $name(pub u8);

        impl $name {
            /// The value as f32 (exact).
            #[inline]
            pub fn to_f32(self) -> f32 {
                $fmt.decode(self.0 as u32)
            }
            #[inline]
            pub fn to_f64(self) -> f64 {
                self.to_f32() as f64
            }
            /// Rounds `x` to nearest-even; out-of-range values and infinities become the largest
            /// finite value when `saturate`, otherwise infinity or NaN as the format allows.
            #[inline]
            pub fn from_f64(x: f64, saturate: bool) -> $name {
                $name($fmt.encode(x, saturate) as u8)
            }
            #[inline]
            pub fn from_f32(x: f32, saturate: bool) -> $name {
                $name::from_f64(x as f64, saturate)
            }
            pub fn is_nan(self) -> bool {
                self.to_f32().is_nan()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}(0x{:02x} = {})", stringify!($name), self.0, self.to_f32())
            }
        }
    };
}

float_type!(
    /// ONNX FLOAT8E4M3FN: 1 sign, 4 exponent (bias 7), 3 mantissa bits; NaN is S.1111.111, no infinities.
    F8E4M3FN,
    E4M3FN
);
float_type!(
    /// ONNX FLOAT8E4M3FNUZ: 4 exponent bits (bias 8), 3 mantissa bits; 0x80 is NaN, no -0 or infinities.
    F8E4M3FNUZ,
    E4M3FNUZ
);
float_type!(
    /// ONNX FLOAT8E5M2: 5 exponent bits (bias 15), 2 mantissa bits, IEEE infinities and NaNs.
    F8E5M2,
    E5M2
);
float_type!(
    /// ONNX FLOAT8E5M2FNUZ: 5 exponent bits (bias 16), 2 mantissa bits; 0x80 is NaN, no -0 or infinities.
    F8E5M2FNUZ,
    E5M2FNUZ
);
float_type!(
    /// ONNX FLOAT4E2M1 in the low 4 bits: 1 sign, 2 exponent (bias 1), 1 mantissa bit; finite only.
    F4E2M1,
    E2M1
);

/// Rounding of a float to FLOAT8E8M0 (Cast's `round_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum E8M0Round {
    /// Away from zero: any fraction rounds the exponent up.
    #[default]
    Up,
    /// Toward zero: the fraction is dropped.
    Down,
    /// To nearest, ties up.
    Nearest,
}

impl E8M0Round {
    pub fn parse(s: &str) -> Option<E8M0Round> {
        match s {
            "up" => Some(E8M0Round::Up),
            "down" => Some(E8M0Round::Down),
            "nearest" => Some(E8M0Round::Nearest),
            _ => None,
        }
    }
}

/// ONNX FLOAT8E8M0: an unsigned power of two 2^(e - 127); 0xFF is NaN, there is no zero.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct F8E8M0(pub u8);

impl F8E8M0 {
    pub fn to_f32(self) -> f32 {
        if self.0 == 0xff {
            f32::NAN
        } else {
            exp2i(self.0 as i32 - 127) as f32
        }
    }
    pub fn to_f64(self) -> f64 {
        self.to_f32() as f64
    }
    /// The exponent of `x`'s f32 bits, rounded per `mode`; the sign is ignored (negative inputs
    /// are undefined in ONNX). NaN and infinity give NaN. With `saturate`, rounding never
    /// goes past the largest exponent; without it, overflow gives NaN.
    pub fn from_f32(x: f32, saturate: bool, mode: E8M0Round) -> F8E8M0 {
        let bits = x.to_bits();
        let exp = (bits >> 23) & 0xff;
        if exp == 0xff {
            return F8E8M0(0xff);
        }
        let round_up = match mode {
            E8M0Round::Down => false,
            E8M0Round::Up => bits & 0x7f_ffff != 0,
            E8M0Round::Nearest => {
                let guard = bits & 0x40_0000 != 0;
                let rest = bits & 0x3f_ffff != 0;
                guard && (rest || exp > 0)
            }
        };
        let bump = round_up && !(saturate && exp == 0xfe);
        F8E8M0((exp + bump as u32) as u8)
    }
    pub fn from_f64(x: f64, saturate: bool, mode: E8M0Round) -> F8E8M0 {
        F8E8M0::from_f32(x as f32, saturate, mode)
    }
    pub fn is_nan(self) -> bool {
        self.0 == 0xff
    }
}

impl fmt::Debug for F8E8M0 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "F8E8M0(0x{:02x} = {})", self.0, self.to_f32())
    }
}

macro_rules! int_type {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $bits:expr, $signed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Default, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub $inner);

        impl $name {
            pub const BITS: u32 = $bits;
            pub const MIN: i64 = if $signed { -(1 << ($bits - 1)) } else { 0 };
            pub const MAX: i64 = if $signed { (1 << ($bits - 1)) - 1 } else { (1 << $bits) - 1 };
            /// The low bits of `v`, reinterpreted (two's complement for signed types).
            #[inline]
            pub fn wrapping(v: i64) -> $name {
                let low = v & ((1 << $bits) - 1);
                if $signed && low > Self::MAX {
                    $name((low - (1 << $bits)) as $inner)
                } else {
                    $name(low as $inner)
                }
            }
            /// `v` clamped into the type's range.
            #[inline]
            pub fn saturating(v: i64) -> $name {
                $name(v.clamp(Self::MIN, Self::MAX) as $inner)
            }
            /// The element's storage bits (the low `BITS` bits of the result).
            #[inline]
            pub fn to_bits(self) -> u8 {
                (self.0 as u8) & ((1 << $bits) - 1)
            }
            /// The element stored in the low `BITS` bits of `b`.
            #[inline]
            pub fn from_bits(b: u8) -> $name {
                $name::wrapping(b as i64)
            }
            #[inline]
            pub fn to_i64(self) -> i64 {
                self.0 as i64
            }
        }
    };
}

int_type!(
    /// ONNX UINT4: 0..=15.
    U4, u8, 4, false
);
int_type!(
    /// ONNX INT4: -8..=7.
    I4, i8, 4, true
);
int_type!(
    /// ONNX UINT2: 0..=3.
    U2, u8, 2, false
);
int_type!(
    /// ONNX INT2: -2..=1.
    I2, i8, 2, true
);

impl F4E2M1 {
    /// The element's storage bits (low nibble).
    pub fn to_bits(self) -> u8 {
        self.0 & 0x0f
    }
    pub fn from_bits(b: u8) -> F4E2M1 {
        F4E2M1(b & 0x0f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Bit patterns and values from the OCP 8-bit floating point specification and the ONNX
    // Float8 documentation (docs/technical/float8.md).

    #[test]
    fn e4m3fn_decode() {
        assert_eq!(F8E4M3FN(0x7e).to_f32(), 448.0);
        assert_eq!(F8E4M3FN(0xfe).to_f32(), -448.0);
        assert_eq!(F8E4M3FN(0x38).to_f32(), 1.0);
        assert_eq!(F8E4M3FN(0x08).to_f32(), 2f32.powi(-6)); // smallest normal
        assert_eq!(F8E4M3FN(0x01).to_f32(), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(F8E4M3FN(0x07).to_f32(), 0.875 * 2f32.powi(-6));
        assert!(F8E4M3FN(0x7f).to_f32().is_nan());
        assert!(F8E4M3FN(0xff).to_f32().is_nan());
        assert_eq!(F8E4M3FN(0x78).to_f32(), 256.0);
        assert!(F8E4M3FN(0x80).to_f32() == 0.0 && F8E4M3FN(0x80).to_f32().is_sign_negative());
    }

    #[test]
    fn e4m3fn_encode() {
        assert_eq!(F8E4M3FN::from_f32(448.0, true).0, 0x7e);
        assert_eq!(F8E4M3FN::from_f32(1.0, true).0, 0x38);
        assert_eq!(F8E4M3FN::from_f32(-0.0, true).0, 0x80);
        // 464 lies halfway between 448 (even mantissa) and 480 (not representable): ties to
        // even keep 448; anything above overflows and saturates or becomes NaN.
        assert_eq!(F8E4M3FN::from_f32(464.0, false).0, 0x7e);
        assert_eq!(F8E4M3FN::from_f32(465.0, true).0, 0x7e);
        assert_eq!(F8E4M3FN::from_f32(465.0, false).0, 0x7f);
        assert_eq!(F8E4M3FN::from_f32(f32::INFINITY, true).0, 0x7e);
        assert_eq!(F8E4M3FN::from_f32(f32::NEG_INFINITY, true).0, 0xfe);
        assert_eq!(F8E4M3FN::from_f32(f32::INFINITY, false).0, 0x7f);
        assert_eq!(F8E4M3FN::from_f32(f32::NEG_INFINITY, false).0, 0xff);
        assert_eq!(F8E4M3FN::from_f32(f32::NAN, true).0, 0x7f);
        // 1 + 1/16 is halfway between 1 and 1.125: ties to even (1.0); 1 + 3/16 goes up to 1.25.
        assert_eq!(F8E4M3FN::from_f32(1.0625, true).0, 0x38);
        assert_eq!(F8E4M3FN::from_f32(1.1875, true).0, 0x3a);
        // half the smallest subnormal rounds to even (zero); a bit more rounds up.
        assert_eq!(F8E4M3FN::from_f32(2f32.powi(-10), true).0, 0x00);
        assert_eq!(F8E4M3FN::from_f32(1.5 * 2f32.powi(-10), true).0, 0x01);
        assert_eq!(F8E4M3FN::from_f32(-1e-9, true).0, 0x80);
        // Largest subnormal rounding up into the smallest normal.
        assert_eq!(F8E4M3FN::from_f32(0.9999 * 2f32.powi(-6), true).0, 0x08);
    }

    #[test]
    fn e4m3fnuz() {
        assert_eq!(F8E4M3FNUZ(0x7f).to_f32(), 240.0);
        assert_eq!(F8E4M3FNUZ(0x40).to_f32(), 1.0);
        assert_eq!(F8E4M3FNUZ(0x01).to_f32(), 2f32.powi(-10));
        assert!(F8E4M3FNUZ(0x80).to_f32().is_nan());
        assert_eq!(F8E4M3FNUZ(0xff).to_f32(), -240.0);
        assert_eq!(F8E4M3FNUZ::from_f32(-0.0, true).0, 0x00);
        assert_eq!(F8E4M3FNUZ::from_f32(-1e-9, true).0, 0x00);
        assert_eq!(F8E4M3FNUZ::from_f32(1000.0, true).0, 0x7f);
        assert_eq!(F8E4M3FNUZ::from_f32(-1000.0, true).0, 0xff);
        assert_eq!(F8E4M3FNUZ::from_f32(1000.0, false).0, 0x80);
        assert_eq!(F8E4M3FNUZ::from_f32(f32::NEG_INFINITY, false).0, 0x80);
        assert_eq!(F8E4M3FNUZ::from_f32(-f32::NAN, true).0, 0x80);
    }

    #[test]
    fn e5m2() {
        assert_eq!(F8E5M2(0x7b).to_f32(), 57344.0);
        assert_eq!(F8E5M2(0x3c).to_f32(), 1.0);
        assert_eq!(F8E5M2(0x04).to_f32(), 2f32.powi(-14));
        assert_eq!(F8E5M2(0x01).to_f32(), 2f32.powi(-16));
        assert_eq!(F8E5M2(0x7c).to_f32(), f32::INFINITY);
        assert_eq!(F8E5M2(0xfc).to_f32(), f32::NEG_INFINITY);
        assert!(F8E5M2(0x7d).to_f32().is_nan() && F8E5M2(0x7e).to_f32().is_nan());
        assert_eq!(F8E5M2::from_f32(57344.0, true).0, 0x7b);
        assert_eq!(F8E5M2::from_f32(1e6, true).0, 0x7b);
        assert_eq!(F8E5M2::from_f32(-1e6, true).0, 0xfb);
        assert_eq!(F8E5M2::from_f32(1e6, false).0, 0x7c);
        assert_eq!(F8E5M2::from_f32(-1e6, false).0, 0xfc);
        assert_eq!(F8E5M2::from_f32(f32::INFINITY, false).0, 0x7c);
        assert_eq!(F8E5M2::from_f32(f32::INFINITY, true).0, 0x7b);
        // 61440 is halfway between 57344 and 65536 (infinity): ties to even overflows.
        assert_eq!(F8E5M2::from_f32(61440.0, false).0, 0x7c);
        assert_eq!(F8E5M2::from_f32(61439.0, false).0, 0x7b);
        assert_eq!(F8E5M2::from_f32(f32::NAN, false).0, 0x7e);
        assert_eq!(F8E5M2::from_f32(-f32::NAN, false).0, 0xfe);
        assert_eq!(F8E5M2::from_f32(-0.0, false).0, 0x80);
    }

    #[test]
    fn e5m2fnuz() {
        assert_eq!(F8E5M2FNUZ(0x7f).to_f32(), 57344.0);
        assert_eq!(F8E5M2FNUZ(0x40).to_f32(), 1.0);
        assert_eq!(F8E5M2FNUZ(0x01).to_f32(), 2f32.powi(-17));
        assert!(F8E5M2FNUZ(0x80).to_f32().is_nan());
        assert_eq!(F8E5M2FNUZ::from_f32(1e6, true).0, 0x7f);
        assert_eq!(F8E5M2FNUZ::from_f32(1e6, false).0, 0x80);
        assert_eq!(F8E5M2FNUZ::from_f32(f32::INFINITY, false).0, 0x80);
        assert_eq!(F8E5M2FNUZ::from_f32(-0.0, false).0, 0x00);
    }

    #[test]
    fn e2m1() {
        // All 8 magnitudes of FLOAT4E2M1 (OCP MX specification).
        let mags = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
        for (i, &m) in mags.iter().enumerate() {
            assert_eq!(F4E2M1(i as u8).to_f32(), m);
            assert_eq!(F4E2M1(i as u8 | 8).to_f32(), -m);
            assert_eq!(F4E2M1::from_f32(m, false).0, i as u8);
        }
        assert_eq!(F4E2M1::from_f32(100.0, false).0, 0x7);
        assert_eq!(F4E2M1::from_f32(f32::NEG_INFINITY, false).0, 0xf);
        assert_eq!(F4E2M1::from_f32(5.0, false).0, 0x6); // tie between 4 and 6 → even (4)
        assert_eq!(F4E2M1::from_f32(2.5, false).0, 0x4); // tie between 2 and 3 → even (2)
        assert_eq!(F4E2M1::from_f32(0.25, false).0, 0x0); // tie between 0 and 0.5 → 0
        assert_eq!(F4E2M1::from_f32(-0.26, false).0, 0x9);
        assert_eq!(F4E2M1::from_f32(0.75, false).0, 0x2); // tie between 0.5 and 1 → 1
    }

    #[test]
    fn e8m0() {
        assert_eq!(F8E8M0(127).to_f32(), 1.0);
        assert_eq!(F8E8M0(0).to_f32(), 2f32.powi(-127));
        assert_eq!(F8E8M0(254).to_f32(), 2f32.powi(127));
        assert!(F8E8M0(255).to_f32().is_nan());
        use E8M0Round::*;
        assert_eq!(F8E8M0::from_f32(1.0, true, Up).0, 127);
        assert_eq!(F8E8M0::from_f32(1.5, true, Up).0, 128);
        assert_eq!(F8E8M0::from_f32(1.5, true, Down).0, 127);
        assert_eq!(F8E8M0::from_f32(1.5, true, Nearest).0, 128);
        assert_eq!(F8E8M0::from_f32(1.4, true, Nearest).0, 127);
        assert_eq!(F8E8M0::from_f32(0.0, true, Up).0, 0);
        assert_eq!(F8E8M0::from_f32(f32::MAX, true, Up).0, 254);
        assert_eq!(F8E8M0::from_f32(f32::MAX, false, Up).0, 255);
        assert_eq!(F8E8M0::from_f32(f32::NAN, true, Up).0, 255);
    }

    #[test]
    fn small_ints() {
        assert_eq!(I4::wrapping(-9), I4(7));
        assert_eq!(I4::wrapping(8), I4(-8));
        assert_eq!(U4::wrapping(-2), U4(14));
        assert_eq!(I2::wrapping(2), I2(-2));
        assert_eq!(I2::wrapping(3), I2(-1));
        assert_eq!(U2::wrapping(5), U2(1));
        assert_eq!(I4::saturating(100), I4(7));
        assert_eq!(I2::saturating(-100), I2(-2));
        assert_eq!(I4(-1).to_bits(), 0xf);
        assert_eq!(I4::from_bits(0xf), I4(-1));
        assert_eq!(I2::from_bits(0x2), I2(-2));
        assert_eq!((I4::MIN, I4::MAX, U2::MIN, U2::MAX), (-8, 7, 0, 3));
    }
}
