use std::process::Command;

// The migrations are compiled into the binary (`sqlx::migrate!`); a new
// file there must rebuild it.
//
// The commit the binary is built from goes in `MESHI_COMMIT`, so `meshi
// --version` and `meshi_build_info` name the build, not only the release:
// two nodes of one version built from different commits look different.
// Outside a git checkout (a source tarball) it is `unknown`.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MESHI_COMMIT={commit}");
    // A new commit or a checkout moves HEAD or the branch it names.
    for path in ["HEAD", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(path) = git(&["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
