//! gRPC front-end: `inference.GRPCInferenceService` (KServe V2), over the same core `infer` call
//! as HTTP. The Rust code for the protocol is generated once from `proto/grpc_service.proto` by
//! `codegen/` and committed, so building needs no protoc.

#[allow(clippy::all, missing_docs)]
pub mod inference;

use inference::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use inference::*;
use kiln_tensor::{DType, Tensor, TensorData};
use tonic::{Request, Response, Status};

use crate::core::{CoreRequest, SharedState};
use crate::datatype::{numel, parse_shape, parse_v2, tensor_from_raw, tensor_to_raw, v2_name};
use crate::error::ServeError;
use crate::repository::{v2_datatype, v2_shape, ModelState};

pub struct Service {
    state: SharedState,
}

/// The tonic service for a server state.
pub fn service(state: SharedState) -> GrpcInferenceServiceServer<Service> {
    let limit = state.config.max_body_bytes;
    GrpcInferenceServiceServer::new(Service { state }).max_decoding_message_size(limit).max_encoding_message_size(usize::MAX)
}

pub fn status(e: ServeError) -> Status {
    let code = match &e {
        ServeError::BadRequest(_) => tonic::Code::InvalidArgument,
        ServeError::NotFound(_) => tonic::Code::NotFound,
        ServeError::Unauthorized(_) => tonic::Code::Unauthenticated,
        ServeError::Forbidden(_) => tonic::Code::PermissionDenied,
        ServeError::TooLarge(_) | ServeError::RateLimited { .. } => tonic::Code::ResourceExhausted,
        ServeError::Unavailable { .. } => tonic::Code::Unavailable,
        ServeError::Internal(_) => tonic::Code::Internal,
    };
    Status::new(code, e.message().to_string())
}

impl Service {
    fn auth<T>(&self, req: &Request<T>, model: Option<&str>) -> Result<(), Status> {
        if !self.state.auth.enabled() {
            return Ok(());
        }
        let h = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
        self.state.auth.check(h, model).map_err(status)
    }
}

fn version_opt(v: &str) -> Option<&str> {
    if v.is_empty() {
        None
    } else {
        Some(v)
    }
}

fn from_contents(name: &str, dtype: DType, shape: Vec<usize>, c: InferTensorContents) -> Result<Tensor, ServeError> {
    let n = numel(name, &shape)?;
    fn narrow<S: Copy, T: TryFrom<S>>(name: &str, v: Vec<S>, what: &str) -> Result<Vec<T>, ServeError> {
        v.into_iter()
            .enumerate()
            .map(|(i, x)| T::try_from(x).map_err(|_| ServeError::bad(format!("input '{name}': element {i} is out of range for {what}"))))
            .collect()
    }
    let data = match dtype {
        DType::Bool => TensorData::Bool(c.bool_contents),
        DType::I8 => TensorData::I8(narrow(name, c.int_contents, "INT8")?),
        DType::I16 => TensorData::I16(narrow(name, c.int_contents, "INT16")?),
        DType::I32 => TensorData::I32(c.int_contents),
        DType::I64 => TensorData::I64(c.int64_contents),
        DType::U8 => TensorData::U8(narrow(name, c.uint_contents, "UINT8")?),
        DType::U16 => TensorData::U16(narrow(name, c.uint_contents, "UINT16")?),
        DType::U32 => TensorData::U32(c.uint_contents),
        DType::U64 => TensorData::U64(c.uint64_contents),
        DType::F32 => TensorData::F32(c.fp32_contents),
        DType::F64 => TensorData::F64(c.fp64_contents),
        DType::String => {
            let mut v = Vec::with_capacity(c.bytes_contents.len());
            for (i, b) in c.bytes_contents.into_iter().enumerate() {
                v.push(String::from_utf8(b).map_err(|_| {
                    ServeError::bad(format!("input '{name}': BYTES element {i} is not valid UTF-8 (the model expects strings)"))
                })?);
            }
            TensorData::String(v)
        }
        DType::F16 | DType::BF16 => {
            return Err(ServeError::bad(format!("input '{name}': {} data must be sent in raw_input_contents", v2_name(dtype))))
        }
        other => return Err(ServeError::bad(format!("input '{name}': datatype {} is not supported", v2_name(other)))),
    };
    if data.len() != n {
        return Err(ServeError::bad(format!(
            "input '{name}': shape {shape:?} has {n} elements but the contents have {}",
            data.len()
        )));
    }
    Tensor::new(shape, data).map_err(|e| ServeError::bad(format!("input '{name}': {e}")))
}

fn decode(req: ModelInferRequest) -> Result<CoreRequest, ServeError> {
    let raw = req.raw_input_contents;
    if !raw.is_empty() && raw.len() != req.inputs.len() {
        return Err(ServeError::bad(format!(
            "expected {} raw_input_contents (one per input) but got {}",
            req.inputs.len(),
            raw.len()
        )));
    }
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (i, inp) in req.inputs.into_iter().enumerate() {
        let dtype = parse_v2(&inp.datatype).map_err(|e| ServeError::bad(format!("input '{}': {e}", inp.name)))?;
        let shape = parse_shape(&inp.name, &inp.shape)?;
        let t = match (raw.get(i), inp.contents) {
            (Some(r), None) => tensor_from_raw(&inp.name, dtype, shape, r)?,
            (None, Some(c)) => from_contents(&inp.name, dtype, shape, c)?,
            (Some(_), Some(_)) => {
                return Err(ServeError::bad(format!("input '{}' has both contents and raw_input_contents", inp.name)))
            }
            (None, None) => return Err(ServeError::bad(format!("input '{}' has no data", inp.name))),
        };
        inputs.push((inp.name, t));
    }
    let outputs = if req.outputs.is_empty() { None } else { Some(req.outputs.into_iter().map(|o| o.name).collect()) };
    Ok(CoreRequest { model: req.model_name, version: version_opt(&req.model_version).map(str::to_string), inputs, outputs })
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(&self, _r: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(&self, _r: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse { ready: self.state.is_ready() }))
    }

    async fn model_ready(&self, r: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        self.auth(&r, Some(&r.get_ref().name))?;
        let m = r.into_inner();
        let ready = self.state.repo.resolve(&m.name, version_opt(&m.version)).is_ok() && self.state.is_ready();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(&self, r: Request<ServerMetadataRequest>) -> Result<Response<ServerMetadataResponse>, Status> {
        self.auth(&r, None)?;
        Ok(Response::new(ServerMetadataResponse {
            name: "kiln".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::http::EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        }))
    }

    async fn model_metadata(&self, r: Request<ModelMetadataRequest>) -> Result<Response<ModelMetadataResponse>, Status> {
        self.auth(&r, Some(&r.get_ref().name))?;
        let m = r.into_inner();
        let lv = self.state.repo.resolve(&m.name, version_opt(&m.version)).map_err(status)?;
        let entry = self.state.repo.entry(&m.name).ok_or_else(|| Status::not_found(format!("unknown model '{}'", m.name)))?;
        let meta = |ios: &[kiln_engine::IoInfo]| {
            ios.iter()
                .map(|io| model_metadata_response::TensorMetadata {
                    name: io.name.clone(),
                    datatype: v2_datatype(&io.ty).into(),
                    shape: v2_shape(&io.ty),
                })
                .collect()
        };
        Ok(Response::new(ModelMetadataResponse {
            name: m.name,
            versions: entry.versions.keys().map(|v| v.to_string()).collect(),
            platform: "onnxruntime_onnx".into(),
            inputs: meta(lv.session.inputs()),
            outputs: meta(lv.session.outputs()),
        }))
    }

    async fn model_infer(&self, r: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        self.auth(&r, Some(&r.get_ref().model_name))?;
        let req = r.into_inner();
        let id = req.id.clone();
        let core = decode(req).map_err(status)?;
        let resp = self.state.infer(core).await.map_err(status)?;
        let mut outputs = Vec::with_capacity(resp.outputs.len());
        let mut raw = Vec::with_capacity(resp.outputs.len());
        for (name, t) in resp.outputs {
            let mut bytes = Vec::new();
            tensor_to_raw(&t, &mut bytes);
            raw.push(bytes);
            outputs.push(model_infer_response::InferOutputTensor {
                name,
                datatype: v2_name(t.dtype()).into(),
                shape: t.shape().iter().map(|&d| d as i64).collect(),
                parameters: Default::default(),
                contents: None,
            });
        }
        Ok(Response::new(ModelInferResponse {
            model_name: resp.model_name,
            model_version: resp.model_version,
            id,
            parameters: Default::default(),
            outputs,
            raw_output_contents: raw,
        }))
    }

    async fn repository_index(&self, r: Request<RepositoryIndexRequest>) -> Result<Response<RepositoryIndexResponse>, Status> {
        self.auth(&r, None)?;
        let ready_only = r.get_ref().ready;
        let st = self.state.clone();
        let list = tokio::task::spawn_blocking(move || st.repo.index())
            .await
            .map_err(|_| Status::internal("repository index failed"))?
            .map_err(status)?;
        let models = list
            .into_iter()
            .filter(|(_, _, s, _)| !ready_only || *s == ModelState::Ready)
            .map(|(name, v, s, reason)| repository_index_response::ModelIndex {
                name,
                version: v.map(|v| v.to_string()).unwrap_or_default(),
                state: s.as_str().into(),
                reason,
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        r: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        self.auth(&r, Some(&r.get_ref().model_name))?;
        let name = r.into_inner().model_name;
        let st = self.state.clone();
        tokio::task::spawn_blocking(move || st.repo.load(&name))
            .await
            .map_err(|_| Status::internal("model load failed"))?
            .map_err(status)?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        r: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        self.auth(&r, Some(&r.get_ref().model_name))?;
        self.state.repo.unload(&r.get_ref().model_name).map_err(status)?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }
}
