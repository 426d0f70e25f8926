//! Fuzz target: the whole loader — decode, compile (type inference, constant folding, planning)
//! — on arbitrary bytes, then one run with zero-filled inputs of the declared shapes when they
//! are small and static. Any panic is a bug; errors are expected.

#![no_main]

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::{Tensor, Value, ValueType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(session) = Session::from_bytes(data, SessionOptions::default().with_threads(1)) else {
        return;
    };
    let mut feeds = Vec::new();
    for io in session.inputs() {
        let ValueType::Tensor { dtype, shape: Some(shape) } = &io.ty else { return };
        let Some(dims) = shape.as_fixed() else { return };
        if dims.iter().product::<usize>() > 4096 {
            return;
        }
        let Ok(t) = Tensor::zeros(*dtype, dims) else { return };
        feeds.push((io.name.clone(), Value::Tensor(t)));
    }
    let _ = session.run(feeds);
});
