//! `kiln run`: feeds .npy inputs to a model and writes its outputs as .npy plus outputs.json.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use kiln_engine::{Session, SessionOptions};
use kiln_tensor::npy::{read_npy, write_npy};
use kiln_tensor::Value;
use serde_json::{json, Map};

use crate::json::value_to_json;
use crate::{flag_value, parse_threads, CliError};

pub fn main(args: &[String]) -> Result<(), CliError> {
    let mut model: Option<&String> = None;
    let mut inputs: Vec<(Option<String>, PathBuf)> = Vec::new();
    let mut out_dir: Option<PathBuf> = None;
    let mut threads = 0usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--input" | "-i" => {
                let v = flag_value(&mut it, "--input")?;
                match v.split_once('=') {
                    Some((name, file)) if !name.is_empty() => inputs.push((Some(name.to_string()), PathBuf::from(file))),
                    _ => inputs.push((None, PathBuf::from(v))),
                }
            }
            "--output-dir" | "-o" => out_dir = Some(PathBuf::from(flag_value(&mut it, "--output-dir")?)),
            "--threads" => threads = parse_threads(flag_value(&mut it, "--threads")?)?,
            s if s.starts_with('-') => return Err(CliError(format!("run: unknown option '{s}'"))),
            _ if model.is_none() => model = Some(a),
            s => return Err(CliError(format!("run: unexpected argument '{s}'"))),
        }
    }
    let model = model.ok_or_else(|| CliError("run: missing MODEL".into()))?;
    let out_dir = out_dir.ok_or_else(|| CliError("run: missing --output-dir DIR".into()))?;
    let session = Session::from_file(Path::new(model), SessionOptions::default().with_threads(threads))?;

    let mut feeds: Vec<(String, Value)> = Vec::new();
    for (name, file) in inputs {
        let name = match name {
            Some(n) => n,
            None if session.inputs().len() == 1 => session.inputs()[0].name.clone(),
            None => {
                return Err(CliError(format!(
                    "--input {} needs a name (NAME=FILE.npy): the model has inputs {}",
                    file.display(),
                    names(&session)
                )))
            }
        };
        let bytes = fs::read(&file).map_err(|e| CliError(format!("cannot read input file {}: {e}", file.display())))?;
        let t = read_npy(&bytes).map_err(|e| CliError(format!("input file {}: {e}", file.display())))?;
        feeds.push((name, Value::Tensor(t)));
    }
    let outputs = session.run(feeds)?;

    fs::create_dir_all(&out_dir)
        .map_err(|e| CliError(format!("cannot create output directory {}: {e}", out_dir.display())))?;
    let mut index = Map::new();
    let mut used: HashSet<String> = HashSet::new();
    for (name, value) in &outputs {
        let entry = match value {
            Value::Tensor(t) => {
                let file = unique_file_name(name, &mut used);
                let bytes = write_npy(t).map_err(|e| CliError(format!("output '{name}': {e}")))?;
                let path = out_dir.join(&file);
                fs::write(&path, bytes).map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
                json!({ "file": file, "dtype": t.dtype().numpy_name(), "shape": t.shape() })
            }
            other => json!({ "value": value_to_json(other) }),
        };
        index.insert(name.clone(), entry);
    }
    let path = out_dir.join("outputs.json");
    let text = serde_json::to_string_pretty(&serde_json::Value::Object(index))?;
    fs::write(&path, text + "\n").map_err(|e| CliError(format!("cannot write {}: {e}", path.display())))?;
    Ok(())
}

fn names(s: &Session) -> String {
    s.inputs().iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
}

/// `[A-Za-z0-9._-]` only, never empty, never `outputs.json`, unique within the run.
fn unique_file_name(name: &str, used: &mut HashSet<String>) -> String {
    let mut base: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if base.is_empty() || base.chars().all(|c| c == '.') {
        base = "output".into();
    }
    let mut file = format!("{base}.npy");
    let mut k = 1;
    while file == "outputs.json" || !used.insert(file.clone()) {
        file = format!("{base}_{k}.npy");
        k += 1;
    }
    file
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn file_names_are_sanitised_and_unique() {
        let mut used = HashSet::new();
        assert_eq!(unique_file_name("out:0/x", &mut used), "out_0_x.npy");
        assert_eq!(unique_file_name("out_0_x", &mut used), "out_0_x_1.npy");
        assert_eq!(unique_file_name("..", &mut used), "output.npy");
    }
}
