//! Points the console embedding (`src/console.rs`) at `console/dist` when `scripts/console` has
//! built it, or at a one-page placeholder naming that command, so a fresh clone still builds with
//! plain `cargo build`.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest.join("..").join("console").join("dist");
    // A directory is scanned as a whole; a missing one makes Cargo rerun this script each build,
    // so a console built later is picked up.
    println!("cargo:rerun-if-changed={}", dist.display());
    let folder = if dist.join("index.html").is_file() {
        dist
    } else {
        let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
        let placeholder = out.join("console-placeholder");
        let page = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>smartsite</title></head><body><h1>smartsite</h1><p>The web console was not built into \
this binary. Run <code>scripts/console</code> (or <code>scripts/serve</code>) and build again; \
the API is at <a href=\"/docs\">/docs</a>.</p></body></html>\n";
        if let Err(e) = std::fs::create_dir_all(&placeholder)
            .and_then(|()| std::fs::write(placeholder.join("index.html"), page))
        {
            println!("cargo:warning=cannot write the console placeholder: {e}");
        }
        placeholder
    };
    println!("cargo:rustc-env=SMARTSITE_CONSOLE_DIR={}", folder.display());
}
