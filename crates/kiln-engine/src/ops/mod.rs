//! Operator implementations, one file per family. Each family exposes `register`, which adds its
//! ops to the registry with the lowest opset it implements. To add an op: implement `Op` in the
//! family's file, write its builder (parse attributes, resolve opset differences), register it.

pub mod util;

mod attention;
mod constant;
mod control;
mod elementwise;
mod loss;
mod matmul;
mod ml;
mod nn;
mod quant;
mod random;
mod reduce;
mod resize;
mod rnn;
mod sequence;
mod shape;
mod signal;
mod text;
mod training;
mod vision;

use crate::registry::Registry;

/// Adds every built-in operator to `r`.
pub fn register_all(r: &mut Registry) {
    attention::register(r);
    constant::register(r);
    control::register(r);
    elementwise::register(r);
    loss::register(r);
    matmul::register(r);
    ml::register(r);
    nn::register(r);
    quant::register(r);
    random::register(r);
    reduce::register(r);
    resize::register(r);
    rnn::register(r);
    sequence::register(r);
    shape::register(r);
    signal::register(r);
    text::register(r);
    training::register(r);
    vision::register(r);
}
