//! Writes the CRDs generated from the API types to `deploy/crds`, or prints
//! them with `--stdout`.
//!
//! Usage: `cargo run -p certflow-api --bin crdgen [-- --stdout | --out-dir DIR]`

use std::{path::PathBuf, process::ExitCode};

use certflow_api::crd::{crds, render_crd};

const USAGE: &str = "usage: crdgen [--stdout | --out-dir DIR]";

fn usage_error() -> ExitCode {
    eprintln!("{USAGE}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut stdout = false;
    let mut out_dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds"));
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stdout" => stdout = true,
            "--out-dir" => match args.next() {
                Some(dir) => out_dir = PathBuf::from(dir),
                None => return usage_error(),
            },
            _ => return usage_error(),
        }
    }

    for (file_name, crd) in crds() {
        let rendered = match render_crd(&crd) {
            Ok(rendered) => rendered,
            Err(error) => {
                eprintln!("crdgen: rendering {file_name}: {error}");
                return ExitCode::FAILURE;
            }
        };
        if stdout {
            print!("{rendered}");
            continue;
        }
        let path = out_dir.join(file_name);
        if let Err(error) = std::fs::write(&path, rendered) {
            eprintln!("crdgen: writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("crdgen: wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
