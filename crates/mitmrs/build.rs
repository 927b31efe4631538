//! With the `python` feature, link the binary with an rpath to the libpython it was
//! built against (PYO3_PYTHON's), so it loads that one and not another on the system.
fn main() {
    #[cfg(feature = "python")]
    {
        let cfg = pyo3_build_config::get();
        if let Some(dir) = &cfg.lib_dir {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        }
    }
}
