//! Links the server at its fixed address with the shared linker script.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/../link.ld");
    println!("cargo:rerun-if-changed=../link.ld");
}
