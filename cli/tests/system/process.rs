//! Child processes of the tests: the nginx binary, free ports, signals and the process table.

use std::path::{Path, PathBuf};

/// The nginx binary: `NGINX`, else Debian's `/usr/sbin/nginx` (not on a non-root PATH), else
/// `nginx` on the PATH. Panics when there is none: a gateway test never skips.
pub fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let sbin = Path::new("/usr/sbin/nginx");
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nginx"))
            .find(|path| path.is_file())
    });
    if sbin.is_file() {
        sbin.to_owned()
    } else {
        on_path.expect(
            "nginx is not installed: scripts/test.sh installs it (apt-get install nginx-light)",
        )
    }
}

/// A port nothing listens on now (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Sends `signal` (`TERM`, `KILL`) to `pid`; whether it was delivered.
pub fn signal(pid: u32, signal: &str) -> bool {
    std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether process `pid` exists (a zombie counts: it was not waited for).
pub fn exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The processes whose parent is `parent` and whose command name is `name`.
pub fn children(parent: u32, name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid …`; comm may hold spaces, so split after its `)`.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |(_, comm)| comm);
            let ppid = rest.split_whitespace().nth(1);
            comm == name && ppid == Some(parent.to_string().as_str())
        })
        .collect()
}
