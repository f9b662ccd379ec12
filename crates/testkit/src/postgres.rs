//! A real PostgreSQL server for the journal's tests: `initdb` into a temporary directory (as the
//! `postgres` system user when the tests run as root, since the server refuses to run as root),
//! `pg_ctl start` on a free loopback port, stopped and removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The superuser of the test cluster.
pub const POSTGRES_USER: &str = "journal";

/// A PostgreSQL server of this test process.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    /// `runuser -u postgres --` when running as root.
    as_user: Option<String>,
    /// With TLS: the test CA the server's certificate (for `localhost` and 127.0.0.1) chains to.
    ca: Option<PathBuf>,
}

/// The directory of the server's programs (`initdb`, `pg_ctl`, `createdb`): Debian's newest
/// `/usr/lib/postgresql/N/bin`, else wherever `initdb` is on the PATH.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    (!path.is_empty())
        .then(|| Path::new(&path).parent().map(Path::to_path_buf))
        .flatten()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Postgres {
    /// Makes a cluster and starts its server; `Err` says why not (not installed, cannot start).
    pub fn start() -> Result<Postgres, String> {
        Postgres::start_with(false)
    }

    /// The same with TLS on: a test CA (see [`Postgres::ca_pem`]) and a server certificate for
    /// `localhost` and 127.0.0.1, made with openssl.
    pub fn start_tls() -> Result<Postgres, String> {
        Postgres::start_with(true)
    }

    fn start_with(tls: bool) -> Result<Postgres, String> {
        let bin = postgres_bin_dir()
            .ok_or("PostgreSQL is not installed: apt-get install -y postgresql")?;
        let dir = tempfile::Builder::new()
            .prefix("codesign-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let as_user = if is_root() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err(
                    "cannot give the cluster's directory to the postgres user (is the postgresql package installed?)"
                        .to_string(),
                );
            }
            Some("postgres".to_string())
        } else {
            None
        };
        let port = free_port()?;
        let mut server = Postgres {
            dir,
            bin,
            port,
            as_user,
            ca: None,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                POSTGRES_USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=on",
            server.dir.path().display()
        );
        if tls {
            let (ca, cert, key) = server.make_certificates()?;
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
            server.ca = Some(ca);
        }
        server.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-o",
                &options,
                "-l",
                &server.dir.path().join("server.log").display().to_string(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        Ok(server)
    }

    /// The test CA's certificate (PEM) of a server started with TLS.
    pub fn ca_pem(&self) -> &Path {
        self.ca.as_deref().expect("a server started with start_tls")
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A CA, and a server certificate and key for localhost signed by it, the key readable by
    /// the server alone.
    fn make_certificates(&self) -> Result<(PathBuf, PathBuf, PathBuf), String> {
        let dir = self.dir.path().join("tls");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = |name: &str| dir.join(name).display().to_string();
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    &path("ca.key"),
                    "-out",
                    &path("ca.pem"),
                    "-subj",
                    "/CN=Journal Test CA",
                    "-days",
                    "2",
                    "-addext",
                    "basicConstraints=critical,CA:true",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        )?;
        openssl(
            &[
                &["req", "-new"][..],
                &ec,
                &[
                    "-keyout",
                    &path("server.key"),
                    "-out",
                    &path("server.csr"),
                    "-subj",
                    "/CN=localhost",
                ],
            ]
            .concat(),
        )?;
        std::fs::write(
            dir.join("server.ext"),
            "basicConstraints=CA:false\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(|e| e.to_string())?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &path("server.csr"),
            "-CA",
            &path("ca.pem"),
            "-CAkey",
            &path("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &path("server.ext"),
            "-out",
            &path("server.crt"),
        ])?;
        let key = dir.join("server.key");
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        if self.as_user.is_some() {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map_err(|e| e.to_string())?;
            if !chown.success() {
                return Err("cannot give the server's key to the postgres user".to_string());
            }
        }
        Ok((dir.join("ca.pem"), dir.join("server.crt"), key))
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = match &self.as_user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        let out = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        if !out.status.success() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            return Err(format!(
                "{} {}: {}{}\n{log}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Makes a database and gives its URL (`postgres://journal@127.0.0.1:PORT/NAME`).
    pub fn create_database(&self, name: &str) -> String {
        let port = self.port.to_string();
        self.run(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", POSTGRES_USER, name],
        )
        .unwrap_or_else(|e| panic!("createdb {name}: {e}"));
        self.url(name)
    }

    /// Makes role `role` with `password`, owning a new database `database`, and has the server
    /// ask that role for its password (SCRAM) on loopback connections from now on: the
    /// server's other roles stay on `trust`. Gives the database's URL, without the password.
    pub fn create_password_role(&self, role: &str, password: &str, database: &str) -> String {
        self.psql(
            "postgres",
            &format!("CREATE ROLE {role} LOGIN PASSWORD '{password}'"),
        );
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {database} OWNER {role}"),
        );
        let hba = self.dir.path().join("data").join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap_or_else(|e| panic!("pg_hba.conf: {e}"));
        // The first matching line wins: the role's rule goes first.
        std::fs::write(
            &hba,
            format!("host all {role} 127.0.0.1/32 scram-sha-256\n{rules}"),
        )
        .unwrap_or_else(|e| panic!("pg_hba.conf: {e}"));
        self.psql("postgres", "SELECT pg_reload_conf()");
        // The reload is a signal: wait until a login without the password is refused.
        let started = std::time::Instant::now();
        loop {
            let out = Command::new(self.bin.join("psql"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", role, "-d", database, "-w", "-At", "-c", "SELECT 1"])
                .env_remove("PGPASSWORD")
                .env("PGPASSFILE", "/dev/null")
                .output()
                .unwrap_or_else(|e| panic!("psql: {e}"));
            if !out.status.success() {
                break;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the server did not take the password rule for {role}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        format!("postgres://{role}@127.0.0.1:{}/{database}", self.port)
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{POSTGRES_USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs SQL through `psql` on database `name`; its output, unaligned, tuples only.
    pub fn psql(&self, name: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                POSTGRES_USER,
                "-d",
                name,
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .unwrap_or_else(|e| panic!("psql: {e}"));
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}
