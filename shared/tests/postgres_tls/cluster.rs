//! A private PostgreSQL 15 cluster for one test: TLS on with a certificate made here, SCRAM
//! passwords, and a pg_hba.conf that refuses every TCP connection without TLS. Stopped and
//! removed when dropped, also when the test panics.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use shared::config::PgServer;

const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The role the tests log in as, and its password: URL-reserved characters, a space, a quote.
pub const ROLE: &str = "saga_tls";
pub const PASSWORD: &str = "p@ss:w/rd?#&%= 'x";

pub struct Cluster {
    root: PathBuf,
    data: PathBuf,
    pub port: u16,
    /// The CA that signed the server certificate (which names only 127.0.0.1).
    pub ca: PathBuf,
    /// A CA that signed nothing the server holds.
    pub other_ca: PathBuf,
    as_root: bool,
}

impl Cluster {
    /// Creates, configures and starts the cluster, and the test role.
    pub async fn start() -> Cluster {
        let bin = Path::new(BIN);
        assert!(
            bin.join("initdb").is_file() && bin.join("pg_ctl").is_file(),
            "the PostgreSQL 15 server binaries are missing from {BIN} (apt-get install postgresql-15)"
        );
        for name in ["PGSSLMODE", "PGSSLROOTCERT"] {
            assert!(
                std::env::var_os(name).is_none(),
                "unset {name} to run this test"
            );
        }
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root = std::env::temp_dir().join(format!("saga-pg-tls-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&root).unwrap();
        let cluster = Cluster {
            data: root.join("data"),
            port: free_port(),
            ca: root.join("ca.crt"),
            other_ca: root.join("other-ca.crt"),
            as_root: run_checked(Command::new("id").arg("-u")).stdout == b"0\n",
            root,
        };
        if cluster.as_root {
            run_checked(Command::new("chown").arg("postgres:").arg(&cluster.root));
        }
        cluster.initdb();
        cluster.write_certificates();
        cluster.write_config();
        cluster.start_server();
        cluster.create_role().await;
        cluster
    }

    /// `postgres://saga_tls:…@host:port/database?sslmode=…` as [`PgServer`] derives it, with
    /// `sslrootcert` appended when `root_cert` is given.
    pub fn url(
        &self,
        host: &str,
        database: &str,
        sslmode: &str,
        root_cert: Option<&Path>,
    ) -> String {
        self.url_with_password(host, database, sslmode, root_cert, PASSWORD)
    }

    pub fn url_with_password(
        &self,
        host: &str,
        database: &str,
        sslmode: &str,
        root_cert: Option<&Path>,
        password: &str,
    ) -> String {
        let url = self.server(host, password, sslmode).database_url(database);
        match root_cert {
            Some(path) => format!("{url}&sslrootcert={}", encode(&path.to_string_lossy())),
            None => url,
        }
    }

    /// The server as the services' configuration names it.
    pub fn server(&self, host: &str, password: &str, sslmode: &str) -> PgServer {
        PgServer {
            host: host.into(),
            port: self.port,
            user: ROLE.into(),
            password: Some(password.into()),
            sslmode: Some(sslmode.into()),
            sslrootcert: None,
            base_url: None,
            direct_base_url: None,
        }
    }

    /// The superuser over the cluster's Unix socket (trusted; never TLS).
    fn admin_url(&self) -> String {
        format!(
            "postgres://postgres@{}:{}/postgres",
            encode(&self.root.to_string_lossy()),
            self.port
        )
    }

    fn initdb(&self) {
        let mut initdb = self.command("initdb");
        initdb.arg("-D").arg(&self.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "--no-instructions",
        ]);
        run_checked(&mut initdb);
    }

    fn write_certificates(&self) {
        let ca = certificate_authority("saga test CA");
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        self.write_server_file("server.crt", &cert.pem());
        self.write_server_file("server.key", &key.serialize_pem());
        std::fs::write(&self.ca, ca.pem()).unwrap();
        std::fs::write(&self.other_ca, certificate_authority("unrelated CA").pem()).unwrap();
    }

    /// A file in the data directory, readable by the server's user alone.
    fn write_server_file(&self, name: &str, contents: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.data.join(name);
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_root {
            run_checked(Command::new("chown").arg("postgres:").arg(&path));
        }
    }

    fn write_config(&self) {
        let settings = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\n\
             ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
             password_encryption = 'scram-sha-256'\nfsync = off\n",
            self.port,
            self.root.display()
        );
        let conf = self.data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str(&settings);
        std::fs::write(&conf, text).unwrap();
        let hba = "local all all trust\n\
                   hostnossl all all 0.0.0.0/0 reject\n\
                   hostnossl all all ::/0 reject\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   hostssl all all ::1/128 scram-sha-256\n";
        std::fs::write(self.data.join("pg_hba.conf"), hba).unwrap();
    }

    /// Starts the server and waits, with a deadline, until it accepts connections.
    fn start_server(&self) {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.root.join("server.log"))
            .args(["-W", "start"]);
        run_checked(&mut start);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut ready = self.command("pg_isready");
            ready.arg("-h").arg(&self.root).args([
                "-p",
                &self.port.to_string(),
                "-d",
                "postgres",
                "-U",
                "postgres",
            ]);
            if ready.output().is_ok_and(|out| out.status.success()) {
                return;
            }
            let log = std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 60s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn create_role(&self) {
        use diesel_async::RunQueryDsl;
        let mut admin = shared::db::connect(&self.admin_url())
            .await
            .expect("the superuser connects over the Unix socket");
        let statement = format!(
            "CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{}'",
            PASSWORD.replace('\'', "''")
        );
        diesel::sql_query(statement)
            .execute(&mut admin)
            .await
            .unwrap();
    }

    /// `tool` run as the cluster's owner: `postgres` when the tests run as root.
    fn command(&self, tool: &str) -> Command {
        let program = Path::new(BIN).join(tool);
        if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data.join("postmaster.pid").exists() {
            let mut stop = self.command("pg_ctl");
            stop.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
            match stop.output() {
                Ok(out) if out.status.success() => {}
                other => eprintln!("stopping the test cluster: {other:?}"),
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.root) {
            eprintln!("removing {}: {err}", self.root.display());
        }
    }
}

fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap()
        .port()
}

/// `text` percent-encoded for one URL component.
pub fn encode(text: &str) -> String {
    utf8_percent_encode(text, NON_ALPHANUMERIC).to_string()
}

fn run_checked(command: &mut Command) -> Output {
    let out = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
