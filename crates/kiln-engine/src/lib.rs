//! kiln-engine: the ONNX runtime proper — IR compilation, passes, planner and the `Session` API.
//!
//! Data flow: `kiln_onnx` decodes the model; `fuse` rewrites exporter activation chains (SiLU,
//! GELU) into single operators and folds biases, activations and residual Adds into the
//! products and convolutions before them; `plan::compile` builds every operator through the
//! `Registry` (ops/ has one file per family), infers types, folds constants, removes dead nodes
//! and computes liveness; `Session::run` executes the plan. Depends on kiln-tensor, kiln-onnx and
//! kiln-kernels; knows nothing of the CLI, server or JS front doors.

pub mod error;
mod functions;
mod fuse;
pub mod op;
pub mod ops;
mod plan;
pub mod registry;
mod session;
pub mod sparse;

pub use error::{Error, OpError, OpResult, UnsupportedNode};
pub use op::{Inputs, NodeInfo, Op};
pub use plan::Subgraph;
pub use registry::{OpEntry, Registry, MAX_AI_ONNX_OPSET};
pub use session::{IoInfo, ModelInfo, Session, SessionOptions};
pub use kiln_tensor as tensor;
